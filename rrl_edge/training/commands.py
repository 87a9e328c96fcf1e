"""The commands on the PyTorch model, run on a workstation: ``rrl-edge model-info``, ``train``, ``eval`` and
``qat``, added by :func:`add_commands`.

argparse and the standard library at import (the training defaults come from rrl_edge.training.config, which is
standard library only): torch, OpenCV and scikit-learn load inside the commands, so ``rrl-edge --help`` stays
instant and a device without torch still builds the whole command line.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

from rrl_edge.argtypes import (HelpFormatter, batch_size, command_groups, defaults_of, example, hidden_alias,
                               model_input, learning_rate, polarity_option, positive_float, positive_int, thread_count,
                               unit_fraction, width)
from rrl_edge.data.options import PATCH_CUTTING, add_patch_options, data_path, patch_config
from rrl_edge.errors import OutputError, RRLEdgeError
from rrl_edge.training.config import DEVICES, SCHEDULES, QATConfig, TrainConfig


def cmd_model_info(args: argparse.Namespace) -> int:
    from rrl_edge.models.complexity import model_info

    info = model_info(args.width)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:<24} {value}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Refuse outputs over inputs and a used --out-dir, hold the folder's lock, then train."""
    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import RunLock, guard_outputs, resolve
    from rrl_edge.training.modality import parse_families

    # canonical once, and a misspelt family fails here, before minutes of patch cutting
    args.modality = ",".join(parse_families(args.modality))
    datas = [Path(d) for d in args.data] if args.data else [data_path(None)]
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

    config = patch_config(args)
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
    from rrl_edge.evaluate import evaluate_sets
    from rrl_edge.fpr95_table import format_tables
    from rrl_edge.plots import plot_roc, plot_score_histograms
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.patch_sources import load_sets
    from rrl_edge.separation import separation

    from rrl_edge.data.patchfile import check_both_classes, data_inputs
    from rrl_edge.paths import guard_outputs

    data = data_path(args.data)
    guard_outputs({"--data": data_inputs(data, args.labels), "--model": [args.model]},
                  files={"--json": args.json, "--roc": args.roc, "--hist": args.hist})
    sets, info = load_sets(data, args.split, patch_config(args), labels=Path(args.labels) if args.labels else None,
                           progress=not args.quiet)
    if args.categories:
        wanted = args.categories.split(",")
        missing = [c for c in wanted if c not in sets]
        if missing:
            raise RRLEdgeError(f"--categories: {missing} not in {data} (it has {sorted(sets)})")
        sets = {c: sets[c] for c in wanted}
    for name, ps in sets.items():  # before any scoring
        check_both_classes(ps.labels, f"{info['source']} [{name}]")
    model, meta = load_model(args.model or shipped_for_layout(info["layout"]), args.polarity)
    scores = {}

    def network(ps):
        scores[("RRL-Net", ps.name)] = s = score_with(model, ps.patches, args.batch, show_progress=not args.quiet,
                                                       desc=ps.name, source=ps.name)
        return s

    results = {"RRL-Net": evaluate_sets(sets, network, info.get("protocol"))}
    if args.baseline == "sift":
        from rrl_edge.baselines.sift import sift_scores

        def sift(ps):
            scores[("SIFT", ps.name)] = s = sift_scores(ps.patches)
            return s

        results["SIFT"] = evaluate_sets(sets, sift, info.get("protocol"))
    print(f"model: {meta['path']} (width {meta['config']['width']}, polarity {meta['config']['polarity']}); "
          f"data: {info['source']}, split {args.split}")
    if info.get("protocol"):
        print(f"protocol: {info['protocol'].get('description', info['protocol'])}")
    print(format_tables(results))
    net_scores = np.concatenate([scores[("RRL-Net", c)] for c in sets])
    net_labels = np.concatenate([sets[c].labels for c in sets])
    sep = separation(net_labels, net_scores, str(info["source"]))
    print(sep.summary())
    if args.json:
        report = results["RRL-Net"].to_json()  # {categories, mean_fpr95, mean_rule, protocol}: rrl_edge.fpr95_table
        report["separation"] = sep.to_json()
        report["checkpoint"] = meta["path"]
        report["polarity"] = meta["config"]["polarity"]
        report["data"] = info["source"]
        report["split"] = args.split
        if "SIFT" in results:
            report["baseline"] = {"method": "sift", **results["SIFT"].to_json()}
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
    guard_outputs({"--model": [args.model], "--int8": [args.int8],
                   "--data": [p for d in datas for p in data_inputs(d)]}, files={"--out": args.out})
    quantized_inputs(Path(args.int8))  # a file that is no Q/DQ export fails before minutes of data loading
    parts = [concat(load_sets(d, "train", PatchConfig(), progress=not args.quiet)[0], d.name) for d in datas]
    train = concat({p.name: p for p in parts}, "train")
    cfg = QATConfig(checkpoint=args.model, int8_onnx=args.int8, out=args.out, steps=args.steps,
                    batch_size=args.batch, lr=args.lr, seed=args.seed, threads=args.threads,
                    progress=not args.quiet)
    record = finetune(cfg, train)
    print(f"QAT: {args.steps} steps on {len(train)} training pairs, {len(record['quantized_convs'])} INT8 "
          f"convolutions simulated, loss {record['loss_first']:.4f} -> {record['loss_last']:.4f} in "
          f"{record['seconds']:.0f} s; wrote {args.out} (export it with `rrl-edge export --int8 --model {args.out}`)")
    return 0


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge model-info`, `train`, `eval` and `qat` on the CLI's sub-parsers."""
    p = sub.add_parser("model-info", help="parameters and GFLOPs of the deployed and training graphs")
    p.add_argument("--width", type=width, default=1.0, help="channel multiplier (1.0 = the paper; at most 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_model_info)

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
    add_patch_options(p.add_argument_group(PATCH_CUTTING))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="FPR95 per category and the mean", formatter_class=HelpFormatter,
                       epilog=example("rrl-edge eval --data ../shared/data/roadscene --json eval.json --roc roc.png"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("--data", help="image-pair folder or .npy patch file (default: shared VIS-NIR)")
    inputs.add_argument("--labels", help="labels .npy for a patch file (found beside it by default)")
    model_input(inputs, ["--checkpoint"], "checkpoint (.pt) to evaluate (default: the shipped model)")
    inputs.add_argument("--split", choices=("train", "val", "test"), default="test", help="(default %(default)s)")
    inputs.add_argument("--categories", help="comma-separated subset of categories")
    outputs.add_argument("--json", help="write {categories: {name: {fpr95, pairs}}, mean_fpr95, separation} here")
    outputs.add_argument("--roc", help="write a ROC plot (PNG) here")
    outputs.add_argument("--hist", help="write the score distributions of matches and non-matches (PNG) here")
    settings.add_argument("--baseline", choices=("sift",), help="also score a classical baseline")
    polarity_option(settings)
    batch = settings.add_argument("--batch", type=batch_size, default=256,
                                  help="pairs per inference call (default %(default)s)")
    hidden_alias(p, "--batch-size", batch)
    settings.add_argument("--quiet", action="store_true", help="no progress bars")
    add_patch_options(p.add_argument_group(PATCH_CUTTING))
    p.set_defaults(func=cmd_eval)

    qat = defaults_of(QATConfig)
    p = sub.add_parser("qat", help="quantization-aware fine-tuning with the rounding of an export's rrl.int8.onnx")
    model_input(p, ["--checkpoint"], "the checkpoint to fine-tune (the one rrl.int8.onnx came from)", required=True)
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
