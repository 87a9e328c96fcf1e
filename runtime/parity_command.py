"""`rrl-edge parity`: FPR95 of exported artifacts against their reference on real labelled pairs.

Exit code 0 when every candidate passes the proof rule (rrl_edge.runtime.parity.failures), 1 when any fails,
2 on an error (an artifact that cannot be opened, data without labels, bad flags): nothing is scored until
every artifact has opened.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from rrl_edge.argtypes import HelpFormatter, batch_size, command_groups, example, fpr95_budget, thread_count
from rrl_edge.errors import InputError

DESCRIPTION = """\
Score the reference (a checkpoint, or any artifact) and each candidate (ONNX, INT8 ONNX, TensorRT engine,
checkpoint) on every category of labelled pairs and compare them: per category the FPR95 of both, the
difference (candidate - reference, in points) with its paired bootstrap 95% interval, the RMS difference of
the logits, the TPR change at the reference's FPR95 threshold and the share of pairs given the same decision
at score 0.5. A candidate passes when (1) the mean FPR95 over categories moves by at most --budget points,
(2) no category's whole bootstrap interval lies beyond +-budget, (3) no category's logit RMS difference is
over 0.3 and no category's TPR at the reference's threshold moves by more than 1 point (or 3 matching pairs,
in a category of fewer than 300), and (4) at least 99% of the decisions agree. Prints a Markdown table; --json writes {"reference", "candidates": {ART: {"categories":
{name: {"fpr95_reference", "fpr95", "delta", "delta_ci", "logit_rms", "tpr_delta", "agreement", ...}},
"mean_delta", "mean_delta_ci", "logit_rms", "failures", "passed", ...}}, "passed", ...}; --plot writes the ROC
curves of all artifacts (pairs pooled over the categories) as one PNG.
"""

EPILOG = """\
exit codes: 0 every candidate passes; 1 a candidate fails; 2 an error. Every artifact is opened
before anything is scored, so a missing file, an unknown suffix, a corrupt model, or an engine on a machine
without TensorRT fails the whole command (exit 2, naming the file) and writes no JSON or plot."""


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge parity` on the CLI's sub-parsers."""
    from rrl_edge.runtime.parity import DEFAULT_BUDGET

    p = sub.add_parser("parity", help="FPR95 of artifacts vs their reference on real pairs (exit 1 when one fails)",
                       description=DESCRIPTION, formatter_class=HelpFormatter,
                       epilog=EPILOG + "\n\n" + example("rrl-edge parity --reference rrl_edge/weights/rrlnet_joint.pt "
                                                        "--candidate deploy/rrl.int8.onnx --json parity.json"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("--reference", required=True, help="what the candidates are compared with: a checkpoint "
                        "(.pt), or an ONNX model / engine")
    inputs.add_argument("--candidate", action="append", required=True, metavar="ART",
                        help="an artifact to check (.onnx, .plan/.engine, .pt); repeat for several")
    inputs.add_argument("--data", help="image-pair folder, patch build folder or labelled .npy patch file "
                        "(default: the shared VIS-NIR folder, its test split)")
    inputs.add_argument("--labels", help="labels .npy for a patch file (found beside it by default)")
    inputs.add_argument("--split", choices=("train", "val", "test"), default="test",
                        help="split of a build or image folder (default %(default)s)")
    outputs.add_argument("--json", help="write the report as JSON here (folders are created)")
    outputs.add_argument("--plot", help="write the ROC plot of all artifacts (PNG) here")
    settings.add_argument("--budget", type=fpr95_budget, default=DEFAULT_BUDGET, help="FPR95 points the mean may move "
                          "by, and beyond which no category may move beyond its bootstrap interval (default "
                          "%(default)s)")
    settings.add_argument("--batch", type=batch_size, default=256, help="pairs per inference call (default "
                          "%(default)s; capped at an engine's profile maximum)")
    settings.add_argument("--threads", type=thread_count, help="CPU threads of the torch and ONNX Runtime runners")
    settings.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_parity)


def _data_path(value: Optional[str]) -> Path:
    if value:
        return Path(value)
    try:
        from rrl_edge.data.build import default_dataset
    except ImportError as exc:
        raise InputError(f"finding the shared VIS-NIR folder needs the train extra ({exc}); pass --data") from exc
    return default_dataset()


def _check_output(flag: str, value: Optional[str]) -> None:
    """Before minutes of scoring: the report could not be written where asked."""
    if not value:
        return
    if Path(value).is_dir():
        raise InputError(f"{flag} {value}: is a folder, expected a file name")
    for parent in Path(value).parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{flag} {value}: {parent} is a file, not a folder")


def cmd_parity(args: argparse.Namespace) -> int:
    from rrl_edge.atomic import write_json
    from rrl_edge.runtime.inputs import load_inputs
    from rrl_edge.runtime.parity import format_markdown, plot_parity_roc, run_parity

    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import guard_outputs

    _check_output("--json", args.json)
    _check_output("--plot", args.plot)
    from rrl_edge.runtime.bench import check_artifact

    for artifact in [args.reference, *args.candidate]:  # a missing or unknown artifact before the data loads
        check_artifact(artifact)
    guard_outputs({"--reference": [args.reference], "--candidate": args.candidate,
                   "--data": data_inputs(args.data, args.labels)}, files={"--json": args.json, "--plot": args.plot})
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before scoring, not after)
        except ImportError as exc:
            raise InputError(f"--plot {args.plot}: needs matplotlib (pip install matplotlib)") from exc
    data = _data_path(args.data)
    sets = load_inputs(data, args.split, args.labels, progress=not args.quiet)
    report, pooled = run_parity(args.reference, args.candidate, sets, args.budget, args.batch, args.threads,
                                show_progress=not args.quiet, data=data)
    print(format_markdown(report), flush=True)
    if args.json:
        write_json(report, Path(args.json))
    if args.plot:
        import numpy as np

        labels = np.concatenate([np.asarray(s.labels) for s in sets.values()])
        plot_parity_roc(report, pooled, labels, Path(args.plot))
    return 0 if report["passed"] else 1
