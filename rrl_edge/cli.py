"""The `rrl-edge` command line: one entry point, one sub-command per job.

Heavy imports (torch, cv2, sklearn) happen inside the sub-commands, so `rrl-edge --help` is instant
and a device without torch can still run the commands that do not need it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from rrl_edge.argtypes import (HelpFormatter, batch_size, command_groups, defaults_of, example, hidden_alias,
                               learning_rate, positive_float, positive_int, thread_count, unit_fraction, width)
from rrl_edge.errors import OutputError, RRLEdgeError, Terminated


def _add_patch_options(p: Any) -> None:
    """The patch-cutting flags (image-pair folders only) on a parser or an argument group."""
    from rrl_edge.data.protocol import (
        DEFAULT_EVAL_NEGATIVES, DEFAULT_EVAL_SAMPLING, DEFAULT_TRAIN_NEGATIVES, DEFAULT_TRAIN_SAMPLING,
        KEYPOINT_SAMPLINGS, NEGATIVE_RULES,
    )

    p.add_argument("--seed", type=int, default=0, help="seed of the patch cutting and splits (default %(default)s)")
    p.add_argument("--keypoint-sampling", choices=tuple(KEYPOINT_SAMPLINGS), default=None,
                   help=f"val/test keypoints: uniform over the whole response range or strongest first "
                        f"(default {DEFAULT_EVAL_SAMPLING})")
    p.add_argument("--negatives", choices=tuple(NEGATIVE_RULES), default=None,
                   help=f"val/test negatives: far (>= 64 px) or near (64-128 px, Chebyshev) (default {DEFAULT_EVAL_NEGATIVES})")
    p.add_argument("--train-keypoint-sampling", choices=tuple(KEYPOINT_SAMPLINGS), default=None,
                   help=f"training keypoints (default {DEFAULT_TRAIN_SAMPLING})")
    p.add_argument("--train-negatives", choices=tuple(NEGATIVE_RULES), default=None,
                   help=f"training negatives (default {DEFAULT_TRAIN_NEGATIVES}: half near, half far)")
    p.add_argument("--train-keypoints", type=positive_int, default=None, help="positive pairs per training image")
    p.add_argument("--eval-keypoints", type=positive_int, default=None, help="positive pairs per val/test image")
    p.add_argument("--val-images", type=positive_int, default=None, help="VIS-NIR country images held out for validation")
    p.add_argument("--train-images", type=positive_int, default=None,
                   help="cut only this many training images (a seeded draw; e.g. a fine-tuning curve)")
    p.add_argument("--detector", choices=("sift", "fast"), default=None, help="keypoint detector on the VIS image (default sift)")


PATCH_CUTTING = "patch cutting (image-pair folders)"


def _patch_config(args: argparse.Namespace):  # -> PatchConfig
    from rrl_edge.data.build import PatchConfig

    overrides = {"seed": args.seed}
    if args.train_keypoints:
        overrides["train_keypoints_per_image"] = args.train_keypoints
    if args.eval_keypoints:
        overrides["eval_keypoints_per_image"] = args.eval_keypoints
    if args.val_images:
        overrides["val_images"] = args.val_images
    if getattr(args, "train_images", None):
        overrides["train_images"] = args.train_images
    if args.detector:
        overrides["detector"] = args.detector
    for name in ("keypoint_sampling", "negatives", "train_keypoint_sampling", "train_negatives"):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return PatchConfig(**overrides)


def _data_path(value: Optional[str]) -> Path:
    if value:
        return Path(value)
    from rrl_edge.data.build import default_dataset

    return default_dataset()


def cmd_model_info(args: argparse.Namespace) -> int:
    from rrl_edge.models.complexity import model_info

    info = model_info(args.width)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:<24} {value}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from rrl_edge.data.build import build_dataset, ensure_dataset
    from rrl_edge.paths import guard_outputs

    data = _data_path(args.data)
    guard_outputs({"--data": [data]}, folders={"--out-dir": (args.out_dir, None)})  # the whole --out-dir is replaced
    config = _patch_config(args)
    if args.out_dir:
        manifest = build_dataset(data, Path(args.out_dir), config, progress=not args.quiet)
        out = Path(args.out_dir)
    else:
        out = ensure_dataset(data, config, progress=not args.quiet)
        manifest = json.loads((out / "manifest.json").read_text())
    print(f"patches of {data} in {out}")
    counts = manifest.get("counts", {})
    print(json.dumps(counts, indent=2))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Render synthetic other-spectrum partners of VIS images into a pairs folder that train --data reads."""
    from rrl_edge.data.synthetic import vis_images, write_synthetic_pairs
    from rrl_edge.paths import guard_outputs

    source = Path(args.source)
    guard_outputs({"--from": [source]}, folders={"--out-dir": (args.out_dir, None)})  # the whole folder is replaced
    paths, origin = vis_images(source)
    manifest = write_synthetic_pairs(paths, Path(args.out_dir), copies=args.copies, seed=args.seed,
                                     progress=not args.quiet, origin=origin)
    print(f"{len(manifest['pairs'])} synthetic pairs from the {origin} in {args.out_dir}; "
          f"train with --data {args.out_dir} beside your real pairs")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Refuse outputs over inputs and a used --out-dir, hold the folder's lock, then train."""
    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import RunLock, guard_outputs, resolve
    from rrl_edge.training.modality import parse_families

    # canonical once, and a misspelt family fails here, before minutes of patch cutting
    args.modality = ",".join(parse_families(args.modality))
    datas = [Path(d) for d in args.data] if args.data else [_data_path(None)]
    if len(datas) > 1 and args.val_data:
        raise OutputError("--val-data: goes with a single patch-file --data; with several --data each brings its "
                          "own validation split")
    out_dir = Path(args.out_dir)
    resume = args.resume if args.resume and resolve(args.resume) != resolve(out_dir / "last.pt") else None
    guard_outputs({"--data": [p for d in datas for p in data_inputs(d)], "--val-data": data_inputs(args.val_data),
                   "--resume": [resume], "--init-from": [args.init_from if args.init_from != "shipped" else None]},
                  folders={"--out-dir": (out_dir, list(RUN_FILES))})
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (args.resume or args.overwrite):
        held = ", ".join(sorted(p.name for p in out_dir.iterdir())[:4])
        raise OutputError(f"--out-dir {out_dir}: is not empty (holds {held}); pass --resume {out_dir / 'last.pt'} to "
                          "continue its run, --overwrite to replace it, or choose another folder")
    if args.device == "cuda":  # before minutes of patch cutting, not after
        from rrl_edge.runtime.torch_runner import check_torch_device

        check_torch_device("cuda", "rrl-edge train")
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports and writes
    lock = RunLock(out_dir).acquire() if is_main else None  # a second run on this folder is refused
    try:
        return _train_locked(args, datas, is_main)
    finally:
        if lock is not None:
            lock.release()


RUN_FILES = ("best.pt", "last.pt", "curve.json", "curve.png")  # what a training run writes in --out-dir


def _training_sets(args: argparse.Namespace, data: Path, config) -> tuple:  # -> (PatchSet, PatchSet, dict)
    """The training pairs and validation pairs of one --data, and where they came from."""
    from rrl_edge.data.patchfile import check_both_classes, load_patch_file
    from rrl_edge.patch_sources import concat, load_sets, split_off_validation

    train_sets, info = load_sets(data, "train", config, progress=not args.quiet)
    train_set = concat(train_sets, "train")
    check_both_classes(train_set.labels, f"{data} (training pairs)")
    if args.val_data:
        val_set = load_patch_file(Path(args.val_data))
        val_source = args.val_data
    elif info["layout"] == "patch-file":
        train_set, val_set = split_off_validation(train_set, args.seed)
        val_source = f"{data} (held-out validation pairs)"
        print(f"{data}: no --val-data: holding out {len(val_set)} of the file's pairs for validation")
    else:
        val_set = concat(load_sets(data, "val", config, progress=False)[0], "val")
        val_source = f"{data} (validation split)"
    check_both_classes(val_set.labels, val_source)
    return train_set, val_set, info


def _train_locked(args: argparse.Namespace, datas: Sequence[Path], is_main: bool) -> int:
    from rrl_edge.patch_sources import joint_name, merge_training
    from rrl_edge.training.trainer import TrainConfig, train

    config = _patch_config(args)
    parts = [_training_sets(args, d, config) for d in datas]
    train_set, val_sets, info = merge_training(parts)
    cfg = TrainConfig(
        out_dir=args.out_dir, width=args.width, batch_size=args.batch, lr=args.lr, schedule=args.schedule,
        warmup_steps=args.warmup_steps, epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes,
        eval_every=args.eval_every, seed=args.seed, order_seed=args.order_seed, augment=not args.no_augment,
        threads=args.threads, resume=args.resume, init_from=args.init_from, progress=not args.quiet,
        compile=args.compile, device=args.device, amp=not args.no_amp, hard_negatives=args.hard_negatives,
        modality=args.modality, modality_prob=args.modality_prob,
    )
    info["patch_config"] = config.__dict__ if hasattr(config, "__dict__") else str(config)
    if is_main:
        val_text = " + ".join(f"{len(v)} ({n})" for n, v in val_sets.items()) if len(val_sets) > 1 else str(
            len(next(iter(val_sets.values()))))
        print(f"training on {len(train_set)} pairs of {joint_name(parts)}, validating on {val_text} pairs; "
              f"writing {cfg.out_dir}")
    state = train(cfg, train_set, val_sets, info)
    if is_main:
        print(f"done: {state.step} steps, best validation FPR95 {state.best_val_fpr95:.2f}% -> {Path(cfg.out_dir) / 'best.pt'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.metrics import roc_curve

    from rrl_edge.checkpoint import load_model, shipped_for_layout
    from rrl_edge.atomic import write_json
    from rrl_edge.evaluate import evaluate_sets, format_table
    from rrl_edge.plots import plot_roc, plot_score_histograms
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.patch_sources import load_sets
    from rrl_edge.separation import separation

    from rrl_edge.data.patchfile import check_both_classes, data_inputs
    from rrl_edge.paths import guard_outputs

    data = _data_path(args.data)
    guard_outputs({"--data": data_inputs(data, args.labels), "--checkpoint": [args.checkpoint]},
                  files={"--json": args.json, "--roc": args.roc, "--hist": args.hist})
    sets, info = load_sets(data, args.split, _patch_config(args), labels=Path(args.labels) if args.labels else None,
                           progress=not args.quiet)
    if args.categories:
        wanted = args.categories.split(",")
        missing = [c for c in wanted if c not in sets]
        if missing:
            raise RRLEdgeError(f"--categories: {missing} not in {data} (it has {sorted(sets)})")
        sets = {c: sets[c] for c in wanted}
    for name, ps in sets.items():  # before any scoring
        check_both_classes(ps.labels, f"{info['source']} [{name}]")
    model, meta = load_model(args.checkpoint or shipped_for_layout(info["layout"]))
    scores = {}

    def network(ps):
        scores[("RRL-Net", ps.name)] = s = score_with(model, ps.patches, args.batch, show_progress=not args.quiet,
                                                       desc=ps.name, source=ps.name)
        return s

    results = {"RRL-Net": evaluate_sets(sets, network)}
    if args.baseline == "sift":
        from rrl_edge.baselines.sift import sift_scores

        def sift(ps):
            scores[("SIFT", ps.name)] = s = sift_scores(ps.patches)
            return s

        results["SIFT"] = evaluate_sets(sets, sift)
    print(f"model: {meta['path']} (width {meta['config']['width']}); data: {info['source']}, split {args.split}")
    if info.get("protocol"):
        print(f"protocol: {info['protocol'].get('description', info['protocol'])}")
    print(format_table(results))
    net_scores = np.concatenate([scores[("RRL-Net", c)] for c in sets])
    net_labels = np.concatenate([sets[c].labels for c in sets])
    sep = separation(net_labels, net_scores, str(info["source"]))
    print(sep.summary())
    if args.json:
        report = dict(results["RRL-Net"])
        report["separation"] = sep.to_json()
        report["checkpoint"] = meta["path"]
        report["data"] = info["source"]
        report["split"] = args.split
        report["protocol"] = info.get("protocol")
        if "SIFT" in results:
            report["baseline"] = {"method": "sift", **results["SIFT"]}
        write_json(report, Path(args.json))
    if args.roc:
        curves = {}
        for (method, cat), s in scores.items():
            fpr, tpr, _ = roc_curve(sets[cat].labels, s)
            curves.setdefault(method, {})[cat] = (fpr, tpr)
        plot_roc(curves, Path(args.roc), title=f"ROC on {Path(info['source']).name} ({args.split})")
    if args.hist:
        plot_score_histograms(net_scores, net_labels, Path(args.hist),
                              title=f"RRL-Net scores on {Path(info['source']).name} ({args.split})")
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    from rrl_edge.data.build import PatchConfig, default_data_root
    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.patch_sources import concat, load_sets
    from rrl_edge.paths import guard_outputs
    from rrl_edge.training.qat import QATConfig, finetune, quantized_inputs

    datas = [Path(d) for d in args.data] if args.data else [default_data_root() / "vis-nir",
                                                            default_data_root() / "roadscene"]
    guard_outputs({"--checkpoint": [args.checkpoint], "--int8": [args.int8],
                   "--data": [p for d in datas for p in data_inputs(d)]}, files={"--out": args.out})
    quantized_inputs(Path(args.int8))  # a file that is no Q/DQ export fails before minutes of data loading
    parts = [concat(load_sets(d, "train", PatchConfig(), progress=not args.quiet)[0], d.name) for d in datas]
    train = concat({p.name: p for p in parts}, "train")
    cfg = QATConfig(checkpoint=args.checkpoint, int8_onnx=args.int8, out=args.out, steps=args.steps,
                    batch_size=args.batch, lr=args.lr, seed=args.seed, threads=args.threads,
                    progress=not args.quiet)
    record = finetune(cfg, train)
    print(f"QAT: {args.steps} steps on {len(train)} training pairs, {len(record['quantized_convs'])} INT8 "
          f"convolutions simulated, loss {record['loss_first']:.4f} -> {record['loss_last']:.4f} in "
          f"{record['seconds']:.0f} s; wrote {args.out} (export it with `rrl-edge export --int8 --checkpoint {args.out}`)")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line like every other error (no usage block); --help still shows it."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from rrl_edge import __version__

    parser = _Parser(prog="rrl-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rrl-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("model-info", help="parameters and GFLOPs of the deployed and training graphs")
    p.add_argument("--width", type=width, default=1.0, help="channel multiplier (1.0 = the paper; at most 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("data", help="patch datasets from registered image pairs")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="cut 64x64 patch pairs (cached, with a manifest)")
    b.add_argument("--data", help="folder of image pairs (vis-nir or roadscene layout); default: the shared VIS-NIR set")
    hidden_alias(b, "--out", b.add_argument("--out-dir", help="write this folder instead of the cache"))
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_patch_options(b)
    b.set_defaults(func=cmd_data_build)

    b = data_sub.add_parser("synth", help="synthetic cross-spectral pairs (exact geometry) from visible images")
    b.add_argument("--from", dest="source", required=True, metavar="DIR",
                   help="a dataset folder (its training split's VIS images) or any folder of visible images")
    one = b.add_mutually_exclusive_group(required=True)  # --out-dir, or its old spelling --out
    hidden_alias(one, "--out", one.add_argument("--out-dir", help="the pairs folder to write (vis/ + other/ + "
                                                                  "SYNTHETIC.json)"))
    b.add_argument("--copies", type=positive_int, default=1, help="renderings per source image (default %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_data_synth)

    from rrl_edge.training.config import DEVICES, SCHEDULES, QATConfig, TrainConfig

    cfg = defaults_of(TrainConfig)
    p = sub.add_parser("train", help="MLPP training; keeps the best validation checkpoint", formatter_class=HelpFormatter,
                       epilog=example("rrl-edge train --data ../shared/data/vis-nir --out-dir runs/visnir --max-minutes 70"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("--data", action="append",
                        help="image-pair folder or published .npy patch file (default: shared VIS-NIR); repeat it to "
                             "train one joint model on several camera pairs (validation: the mean of each set's FPR95)")
    inputs.add_argument("--val-data", help="validation patch file (with a patch-file --data)")
    inputs.add_argument("--resume", default=cfg["resume"], help="a last.pt to continue exactly where it stopped")
    inputs.add_argument("--init-from", default=cfg["init_from"],
                        help="start from a checkpoint's weights ('shipped': the packaged model for this data)")
    outputs.add_argument("--out-dir", default=cfg["out_dir"], help="best.pt, last.pt and the curve (default %(default)s)")
    outputs.add_argument("--overwrite", action="store_true", help="train into a non-empty --out-dir, replacing its run")
    settings.add_argument("--device", choices=DEVICES, default=cfg["device"],
                          help="where to train (auto: CUDA when this PyTorch sees a GPU) (default %(default)s)")
    settings.add_argument("--no-amp", action="store_true", default=not cfg["amp"],
                          help="on CUDA, train in float32 instead of bfloat16 autocast")
    settings.add_argument("--width", type=width, default=cfg["width"], help="channel multiplier (default %(default)s)")
    batch = settings.add_argument("--batch", type=batch_size, default=cfg["batch_size"],
                                  help="training pairs per step (default %(default)s)")
    hidden_alias(p, "--batch-size", batch)
    settings.add_argument("--lr", type=learning_rate, default=cfg["lr"],
                          help="peak learning rate of Nadam (default %(default)s; paper: 2e-4 constant)")
    settings.add_argument("--schedule", choices=SCHEDULES, default=cfg["schedule"], help="(default %(default)s)")
    settings.add_argument("--warmup-steps", type=int, default=cfg["warmup_steps"], help="(default %(default)s)")
    settings.add_argument("--epochs", type=positive_float, default=cfg["epochs"],
                          help="passes over the training pairs (default %(default)s)")
    settings.add_argument("--max-steps", type=positive_int, default=cfg["max_steps"])
    settings.add_argument("--max-minutes", type=positive_float, default=cfg["max_minutes"])
    settings.add_argument("--eval-every", type=positive_int, default=cfg["eval_every"],
                          help="steps between validations and checkpoints (default %(default)s)")
    settings.add_argument("--threads", type=thread_count, default=cfg["threads"], help="torch CPU threads")
    settings.add_argument("--no-augment", action="store_true", default=not cfg["augment"])
    settings.add_argument("--modality", default=cfg["modality"], metavar="FAMILIES",
                          help="modality randomization for cameras not trained on: 'all' or comma-separated families "
                               "of curve, remap, invert, field, thermal, jpeg (default: none)")
    settings.add_argument("--modality-prob", type=unit_fraction, default=cfg["modality_prob"], metavar="P",
                          help="chance that each family redraws each patch (default %(default)s)")
    settings.add_argument("--hard-negatives", type=unit_fraction, default=cfg["hard_negatives"], metavar="FRACTION",
                          help="online hard-negative mining: the BCE terms keep this fraction of each batch's "
                               "negatives, those scored highest (default %(default)s: all)")
    settings.add_argument("--order-seed", type=int, default=cfg["order_seed"],
                          help="seed of the batch order and augmentation (default: --seed, which also fixes the cut "
                               "and splits); give a new one when continuing from --init-from so the run does not "
                               "replay the same first batches")
    settings.add_argument("--compile", action="store_true", default=cfg["compile"],
                          help="torch.compile the training graph (slow start, faster steps)")
    settings.add_argument("--quiet", action="store_true", default=not cfg["progress"], help="no progress bars")
    _add_patch_options(p.add_argument_group(PATCH_CUTTING))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="FPR95 per category and the mean", formatter_class=HelpFormatter,
                       epilog=example("rrl-edge eval --data ../shared/data/roadscene --json eval.json --roc roc.png"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("--data", help="image-pair folder or .npy patch file (default: shared VIS-NIR)")
    inputs.add_argument("--labels", help="labels .npy for a patch file (found beside it by default)")
    inputs.add_argument("--checkpoint", help="default: the shipped model")
    inputs.add_argument("--split", choices=("train", "val", "test"), default="test", help="(default %(default)s)")
    inputs.add_argument("--categories", help="comma-separated subset of categories")
    outputs.add_argument("--json", help="write {categories: {name: {fpr95, pairs}}, mean_fpr95, separation} here")
    outputs.add_argument("--roc", help="write a ROC plot (PNG) here")
    outputs.add_argument("--hist", help="write the score distributions of matches and non-matches (PNG) here")
    settings.add_argument("--baseline", choices=("sift",), help="also score a classical baseline")
    batch = settings.add_argument("--batch", type=batch_size, default=256,
                                  help="pairs per inference call (default %(default)s)")
    hidden_alias(p, "--batch-size", batch)
    settings.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_patch_options(p.add_argument_group(PATCH_CUTTING))
    p.set_defaults(func=cmd_eval)

    qat = defaults_of(QATConfig)
    p = sub.add_parser("qat", help="quantization-aware fine-tuning with the rounding of an export's rrl.int8.onnx")
    p.add_argument("--checkpoint", required=True, help="the model to fine-tune (the one rrl.int8.onnx came from)")
    p.add_argument("--int8", required=True, help="rrl.int8.onnx of its export: which layers round, at which scales")
    p.add_argument("--data", action="append", help="image-pair folder whose training split trains (repeat; default: "
                   "the shared VIS-NIR and RoadScene sets, the joint model's data)")
    p.add_argument("--out", required=True, help="the fine-tuned checkpoint (.pt) to write")
    p.add_argument("--steps", type=positive_int, default=qat["steps"], help="optimizer steps (default %(default)s)")
    hidden_alias(p, "--batch-size", p.add_argument("--batch", type=batch_size, default=qat["batch_size"],
                                                   help="training pairs per step (default %(default)s)"))
    p.add_argument("--lr", type=learning_rate, default=qat["lr"], help="Adam learning rate (default %(default)s)")
    p.add_argument("--seed", type=int, default=qat["seed"], help="(default %(default)s)")
    p.add_argument("--threads", type=thread_count, default=qat["threads"], help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", default=not qat["progress"], help="no progress bars")
    p.set_defaults(func=cmd_qat)

    from rrl_edge.export.commands import add_commands as add_export_commands
    from rrl_edge.runtime.commands import add_commands as add_runtime_commands
    from rrl_edge.registration.commands import add_commands as add_registration_commands

    add_export_commands(sub)  # export, build
    add_runtime_commands(sub)  # run, parity, bench
    add_registration_commands(sub)  # register, register-eval
    return parser


# Which extra brings a package a command imported (the top-level module of the ImportError).
EXTRAS = {"torch": "train", "cv2": "train", "PIL": "train", "matplotlib": "train", "sklearn": "runtime",
          "tqdm": "runtime", "onnx": "export", "onnxsim": "export", "onnxslim": "export", "onnxruntime": "export",
          "polygraphy": "export", "tensorrt": "tensorrt", "pycuda": "tensorrt"}
_SUBJECT_FLAGS = ("engine", "checkpoint", "reference", "onnx", "resume", "init_from", "data", "artifacts", "out_dir",
                  "out", "json")


def _subject(args: argparse.Namespace) -> str:
    """The file a command was mainly about, for messages about errors that do not name one themselves."""
    for name in _SUBJECT_FLAGS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return str(value)
    return "(no file)"


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    """What escaped a command, as one line that names the file."""
    if isinstance(exc, ImportError) and not isinstance(exc, RRLEdgeError) and (exc.name or "").split(".")[0] != "rrl_edge":
        module = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(module)
        hint = f"pip install 'rrl-edge[{extra}]'" if extra else f"pip install {module or 'the missing package'}"
        return f"{_subject(args)}: needs {module or 'a package'} ({exc}); install it with: {hint}"
    if isinstance(exc, OSError) and not isinstance(exc, RRLEdgeError):
        where = exc.filename or _subject(args)
        also = f" -> {exc.filename2}" if exc.filename2 else ""
        return f"{where}{also}: {exc.strerror or type(exc).__name__}" + (f" ({exc})" if not exc.strerror else "")
    if isinstance(exc, MemoryError):
        return f"{_subject(args)}: out of memory ({exc or 'MemoryError'})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RRLEdgeError):
        return text
    return f"{_subject(args)}: {type(exc).__name__}: {text[:500]}"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"terminated by signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command. Whatever escapes it becomes one line on stderr and an exit code: 2 for an error, 130
    for Ctrl-C, 143 for SIGTERM (raised as an exception, so temp files and staging folders are removed on the
    way out). RRL_EDGE_DEBUG=1 shows the traceback instead."""
    args = build_parser().parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a test calling main in a thread): no handler
        pass
    try:
        return int(args.func(args))
    except Terminated:
        print(f"rrl-edge {args.command}: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"rrl-edge {args.command}: interrupted; temporary files removed", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the one place every failure becomes one line)
        if os.environ.get("RRL_EDGE_DEBUG") and not isinstance(exc, RRLEdgeError):
            raise
        print(f"rrl-edge {args.command}: error: {_one_line(exc, args)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


INTERRUPTED = (130, 143)  # main()'s codes for Ctrl-C and SIGTERM


def entry() -> None:
    """The `rrl-edge` program: main()'s exit code. After Ctrl-C or SIGTERM the run has already removed what it
    was writing and said so in one line; it then leaves without the interpreter's teardown, whose finalizers
    (a loader thread inside torch, a half-run generator) made an interrupted run exit as killed by SIGINT now and
    then instead of with 130."""
    code = main()
    if code in INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
