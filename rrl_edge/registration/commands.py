"""``rrl-edge register``, ``register-folder`` and ``register-eval``: sub-commands added by :func:`add_commands`.

argparse and the standard library at import: the CLI builds every sub-parser, also on a device without torch or
OpenCV, so the registration code loads inside the commands.

The product's settings are the inputs, outputs and settings groups; ``--ablate`` (its own help group) leaves
stages of the pipeline out to measure what each buys. docs/registration-settings.md says which configuration
fields are which, and what measurement set each.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Tuple

from rrl_edge.argtypes import (EXPERIMENTS, HelpFormatter, comma_choices, command_groups, example, hidden_alias,
                               model_input, polarity_option, positive_int, thread_count)
from rrl_edge.registration import DEFAULT_MOTION, MOTIONS, NETWORK_KEYPOINTS, SPLITS


# What `--ablate STAGE` leaves out, named by what is removed: (the old switch that did it, kept as a hidden alias;
# what it removes). Each maps to a RegisterConfig / RefineConfig field in _config.
ABLATIONS: Dict[str, Tuple[str, str]] = {
    "refine": ("--no-refine", "no polish (ECC, then template matching, of the gradient maps), and so no dense path, "
                              "which is made of them"),
    "template": ("--no-template", "polish with ECC only, without the local template matching after it; no dense "
                                  "path either (template matching is its agreement check)"),
    "classical": ("--no-classical", "no SIFT + MAGSAC affine as the dense path's second start (nor as a start of "
                                    "ECC from two starts)"),
    "consensus": ("--no-consensus", "no ECC from two starts: where the network refuses ECC's polish, the refusal "
                                    "stands"),
    "dense-path": ("--network-always", "no dense path (ECC and template matching agreeing, checked by the network's "
                                       "score, answer without the network round): the network round runs on every "
                                       "pair"),
}
# register-eval only: the measurement of what the network buys
NETWORK_ABLATION: Dict[str, Tuple[str, str]] = {
    "network": ("--coarse-only", "no network at all: the best coarse hypothesis, then the polish held only by its "
                                 "move limits"),
}


def _config(args: argparse.Namespace) -> Any:  # RegisterConfig
    """The RegisterConfig a `register` / `register-eval` command line runs: the library's defaults, its
    ``--keypoints`` and ``--motion``, less the stages ``--ablate`` (or an old switch) left out."""
    from rrl_edge.registration.pipeline import RegisterConfig

    cfg = RegisterConfig()
    off = set(args.ablate)
    polish = None if "refine" in off or cfg.refine is None else cfg.refine
    if polish is not None and "template" in off:
        polish = replace(polish, template=None)
    return replace(cfg, window=replace(cfg.window, keypoints=args.keypoints),
                   network="network" not in off, refine=polish, dense_first="dense-path" not in off,
                   classical="classical" not in off, consensus="consensus" not in off, motion=args.motion)


def _open(engine, args: argparse.Namespace):
    """Open the runner first: a wrong or foreign artifact fails before any image work."""
    from rrl_edge.runtime.registry import open_runner, runner_options

    return open_runner(engine, args.backend, **runner_options(engine, args.backend, threads=args.threads,
                                                              polarity=args.polarity))


def cmd_register(args: argparse.Namespace) -> int:
    from rrl_edge.atomic import write_json
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.paths import guard_outputs
    from rrl_edge.registration.estimate import RegistrationFailed
    from rrl_edge.registration.images import read_pair
    from rrl_edge.registration.pipeline import register_images
    from rrl_edge.registration.geometry import warp_to_vis
    from rrl_edge.registration.visualize import checkerboard, write_png

    engine = args.model or shipped_checkpoint()
    guard_outputs({"vis": [args.vis], "other": [args.other], "--model": [engine]},  # before anything runs
                  files={"--json": args.json, "--warp": args.warp, "--overlay": args.overlay})
    vis, other = read_pair(Path(args.vis), Path(args.other))
    with _open(engine, args) as runner:
        try:
            res = register_images(vis, other, runner, _config(args))
        except RegistrationFailed as exc:
            print(f"rrl-edge register: registration failed: {args.vis} -> {args.other}: {exc}", file=sys.stderr)
            return 1
    sure = res.confidence
    assert sure is not None  # register_images measures it whenever a runner scored the answer
    a = res.affine
    print(f"affine (VIS -> other): [[{a[0, 0]:.5f}, {a[0, 1]:.5f}, {a[0, 2]:.3f}], [{a[1, 0]:.5f}, {a[1, 1]:.5f}, "
          f"{a[1, 2]:.3f}]]; {res.inliers} inliers; {res.pairs_scored} pairs scored; {res.seconds:.2f} s")
    print(sure.line(res.inliers))
    if args.json:
        write_json({**res.to_json(), "vis": str(args.vis), "other": str(args.other),
                    "engine": str(engine)}, args.json)
    if args.warp or args.overlay:
        warped = warp_to_vis(other, a, vis.shape)
        if args.warp:
            write_png(warped, Path(args.warp))
        if args.overlay:
            write_png(checkerboard(vis, warped), Path(args.overlay))
    doubt = sure.doubt()
    if doubt:  # the outputs are written so a person can look, but the answer is not vouched for
        print(f"rrl-edge register: unsure: {args.vis} -> {args.other}: {doubt}", file=sys.stderr)
        return 1
    return 0


def cmd_register_eval(args: argparse.Namespace) -> int:
    from rrl_edge.atomic import write_json
    from rrl_edge.checkpoint import shipped_for_layout
    from rrl_edge.data.build import default_dataset, detect_layout
    from rrl_edge.paths import guard_outputs
    from rrl_edge.registration.evaluation import evaluate, format_table, plot_success

    data = Path(args.data) if args.data else default_dataset()
    layout = detect_layout(data)
    engine = args.model or shipped_for_layout(layout)
    guard_outputs({"--data": [data], "--model": [engine]}, files={"--json": args.json, "--plot": args.plot})
    with _open(engine, args) as runner:
        report = evaluate(data, runner, _config(args), args.limit, args.seed, sift=not args.no_sift,
                          show_progress=not args.quiet, split=args.split)
    report["engine"] = str(engine)
    print(format_table(report))
    print(f"network pairs scored per image pair: {report['pairs_scored_per_image_pair']:.0f}")
    u = report.get("unsure")
    if isinstance(u, dict):
        print(f"answers `register` calls unsure (exit 1): {u['pairs']} of {u['of']} ({u['right_at_5px']} of them "
              f"right within 5 px); wrong answers it calls sure: {u['wrong_but_sure']}")
    t = report.get("truth_remeasured")
    if isinstance(t, dict):
        print(f"truth re-measured on {t['pairs']} of {t['of']} pairs (ECC and template matching pass their guards on "
              f"the unmoved pair): the stated truth is off by {t['median_offset_px']:.2f} px median, "
              f"{t['max_offset_px']:.2f} max")
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot_success(report, Path(args.plot))
    return 0


def cmd_register_folder(args: argparse.Namespace) -> int:
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.data.layouts import PAIRS_VIS_DIR
    from rrl_edge.paths import guard_outputs
    from rrl_edge.registration.folder import FAILED, OVERLAY_DIR, SURE, UNSURE, register_folder

    engine = args.model or shipped_checkpoint()
    source, out = Path(args.pairs), Path(args.out_dir)
    guard_outputs({"pairs": [source], "--model": [engine]}, folders={"--out-dir": (out, None)})
    with _open(engine, args) as runner:
        manifest = register_folder(source, out, runner, _config(args), progress=not args.quiet, engine=str(engine))
    counts = manifest["counts"]
    for row in manifest["pairs"]:
        if row["status"] != SURE:
            print(f"{row['status']:<7} {source / PAIRS_VIS_DIR / row['name']}: {row['reason']}")
    print(f"{counts[SURE]} of {len(manifest['pairs'])} pairs registered and kept in {out} ({counts[UNSURE]} unsure, "
          f"{counts[FAILED]} failed: left out); overlays in {out / OVERLAY_DIR}")
    if not counts[SURE]:
        print(f"rrl-edge register-folder: {source}: no pair registered surely; nothing to evaluate or train on",
              file=sys.stderr)
        return 1
    print(f"next: rrl-edge eval --data {out} --test-fraction 1 --hist scores.png   (does the model tell your matches "
          "apart?)")
    print(f"      rrl-edge train --data {out} --init-from shipped                  (fine-tune on them)")
    return 0


def _common(inputs: Any, settings: Any, backend_choices: Any) -> None:
    model_input(inputs, ["--engine"], "TensorRT engine, ONNX model (FP32 or INT8) or checkpoint (default: the shipped "
                                      "model; register: the default joint one, register-eval: the data's)")
    settings.add_argument("--backend", default="auto", choices=backend_choices, help="default: from the file suffix")
    settings.add_argument("--threads", type=thread_count, default=None, help="CPU threads of the runner")
    polarity_option(settings)
    settings.add_argument("--keypoints", type=positive_int, default=NETWORK_KEYPOINTS,
                          help="VIS keypoints in the network round "
                               "(default %(default)s)")
    settings.add_argument("--motion", choices=MOTIONS, default=DEFAULT_MOTION,
                          help="what the fits may be: a similarity (rotation, scale, shift), a full affine, or auto "
                               "(default %(default)s: similarities, an affine only where template matching's matches "
                               "show another aspect)")


def _add_ablate(parser: argparse.ArgumentParser, stages: Dict[str, Tuple[str, str]]) -> None:
    """The experiments group: ``--ablate STAGE[,STAGE...]`` (repeatable) and each stage's old switch, hidden."""
    width = max(len(name) for name in stages)
    listing = [textwrap.fill(what, 92, initial_indent=f"  {name:<{width}}  ", subsequent_indent=" " * (width + 4))
               for name, (_, what) in stages.items()]
    group = parser.add_argument_group(EXPERIMENTS, "\n".join([
        "Leave stages of the pipeline out, to measure what each buys (not a setting for use;",
        "docs/registration-settings.md):", *listing]))
    ablate = group.add_argument("--ablate", action="extend", type=comma_choices(tuple(stages), "stage"), default=[],
                                metavar="STAGE[,STAGE...]",
                                help=f"the stages to leave out, comma-separated or repeated: {', '.join(stages)}")
    for name, (old, _) in stages.items():
        hidden_alias(group, old, ablate, value=name)


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge register`, `register-folder` and `register-eval` on the CLI's sub-parsers."""
    from rrl_edge.runtime.registry import backend_choices

    p = sub.add_parser("register", help="affine registration of a VIS image and a NIR/thermal image",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge register VIS.jpg NIR.jpg --json reg.json --overlay check.png"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("vis", help="visible image")
    inputs.add_argument("other", help="the other spectrum's image (NIR or thermal)")
    _common(inputs, settings, backend_choices())
    outputs.add_argument("--json", help="write {affine, inliers, seconds, ...}")
    outputs.add_argument("--warp", help="PNG: the other image warped onto the VIS grid")
    outputs.add_argument("--overlay", help="PNG: checkerboard of VIS and the warped other image")
    _add_ablate(p, ABLATIONS)
    p.set_defaults(func=cmd_register)

    f = sub.add_parser("register-folder", help="register every pair of two unaligned cameras' folder into a "
                                               "folder that eval and train read",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge register-folder my_pairs --out-dir my_pairs_registered"))
    inputs, outputs, settings = command_groups(f)
    inputs.add_argument("pairs", help="folder with vis/NAME + other/NAME (same file names, any sizes, not aligned)")
    _common(inputs, settings, backend_choices())
    outputs.add_argument("--out-dir", required=True,
                         help="the registered folder: vis/ + other/ (copies) + warp/NAME.npy of the pairs registered "
                              "surely, overlays/ of every registered pair, REGISTRATION.json")
    settings.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_register_folder, ablate=[])

    e = sub.add_parser("register-eval", help="registration corner error against ground truth, beside SIFT + MAGSAC",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge register-eval --data ../shared/data/vis-nir --json e.json "
                                      "--plot success.png"))
    inputs, outputs, settings = command_groups(e)
    inputs.add_argument("--data", help="vis-nir/ (stored matrices) or roadscene/ (seeded random affines); "
                                       "default ../shared/data/vis-nir")
    _common(inputs, settings, backend_choices())
    outputs.add_argument("--json", help="write the per-pair and per-category report")
    outputs.add_argument("--plot", help="PNG: success rate against the corner-error threshold")
    inputs.add_argument("--split", choices=SPLITS, default="test",
                        help="test: the reported pairs; val: the training images under random affines, what "
                             "settings are chosen on (default %(default)s)")
    settings.add_argument("--limit", type=positive_int, default=None, help="at most N pairs per category")
    settings.add_argument("--seed", type=int, default=0,
                          help="seed of the random affines (RoadScene's test pairs, every val pair) (default %(default)s)")
    settings.add_argument("--no-sift", action="store_true", help="leave out the SIFT + MAGSAC baseline")
    settings.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_ablate(e, {**ABLATIONS, **NETWORK_ABLATION})
    e.set_defaults(func=cmd_register_eval)
