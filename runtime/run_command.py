"""`rrl-edge run`: score every pair of a data set with an engine, ONNX model or checkpoint.

Runs on the device: numpy plus the chosen backend (TensorRT + pycuda, or ONNX Runtime); torch only for
checkpoints. FPR95 is reported when the data has labels and scikit-learn is installed.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from rrl_edge.argtypes import (HelpFormatter, batch_size, command_groups, example, model_input, polarity_option,
                               thread_count)
from rrl_edge.errors import InputError
from rrl_edge.fpr95_table import FPR95Table, format_tables
from rrl_edge.runtime.inputs import InputSet

OUT_SUFFIXES = (".npy", ".csv")


def unchecked_engine_warning(engine: str) -> str:
    """The one line `run --no-manifest` prints: what its manifest would have checked and now nothing does."""
    return (f"rrl-edge run: warning: {engine}: running without an rrl-edge manifest (--no-manifest): its sha256, "
            "the TensorRT version and GPU it was built for, and which ONNX and calibration it came from are not "
            "checked; TensorRT and the engine's own input/output tensors are the only checks")


def manifest_option(engine: str, backend: str, no_manifest: bool) -> Optional[bool]:
    """``check_manifest`` for the runner: False with --no-manifest (TensorRT engines only), else unset."""
    if not no_manifest:
        return None
    from rrl_edge.runtime.registry import backend_for

    chosen = backend_for(engine, backend)
    if chosen != "tensorrt":
        raise InputError(f"--no-manifest: only TensorRT engines have an rrl-edge manifest; {engine} runs on {chosen}")
    return False


def write_scores(path: Path, sets: Dict[str, InputSet], scores: Dict[str, np.ndarray]) -> None:
    """Scores in data order: .npy = float32 (N,) over the categories in sorted order; .csv = one row per pair."""
    from rrl_edge.atomic import atomic_write_bytes

    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([scores[name] for name in sets]).astype(np.float32), allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
        return
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["category", "index", "score", "label"])
    for name, one in sets.items():
        labels = one.labels if one.labels is not None else [""] * len(one)
        for i, (score, label) in enumerate(zip(scores[name], labels)):
            writer.writerow([name, i, f"{score:.6f}", label if label == "" else int(label)])
    atomic_write_bytes(path, text.getvalue().encode())


def fpr95_table(sets: Dict[str, InputSet], scores: Dict[str, np.ndarray]) -> Optional[FPR95Table]:
    """FPR95 (%) per labelled category and their mean (rrl_edge.fpr95_table); None when nothing is labelled."""
    labelled = {name: one.labels for name, one in sets.items() if one.labels is not None}
    if not labelled:
        return None
    try:
        from rrl_edge.metrics import fpr95
    except ImportError:
        print("FPR95 not computed: it needs scikit-learn (pip install scikit-learn)")
        return None
    return FPR95Table.from_scores(labelled, scores, fpr95=fpr95)


def cmd_run(args: argparse.Namespace) -> int:
    from rrl_edge.runtime.inputs import load_inputs
    from rrl_edge.runtime.registry import make_runner, runner_options
    from rrl_edge.runtime.runner import score_pairs

    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import guard_outputs

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out {out}: expected a .npy or .csv file name")
    guard_outputs({"--model": [args.model], "--data": data_inputs(args.data, args.labels)},
                  files={"--out": args.out, "--json": args.json})
    check_manifest = manifest_option(args.model, args.backend, args.no_manifest)
    runner = make_runner(args.model, args.backend,
                         **runner_options(args.model, args.backend, threads=args.threads, device=args.device,
                                          check_manifest=check_manifest, polarity=args.polarity))
    if check_manifest is False:
        print(unchecked_engine_warning(args.model), file=sys.stderr)
    sets = load_inputs(args.data, split=args.split, labels=args.labels, progress=not args.quiet)
    for name, one in sets.items():
        if one.labels is not None:
            from rrl_edge.data.patchfile import check_both_classes

            check_both_classes(one.labels, f"{args.data} [{name}]")
    scores: Dict[str, np.ndarray] = {}
    started = time.perf_counter()
    with runner:
        for name, one in sets.items():
            scores[name] = score_pairs(runner, one.patches, args.batch, show_progress=not args.quiet, desc=name,
                                       source=f"{args.data} [{name}]")
        described = runner.describe()
    seconds = time.perf_counter() - started
    pairs = sum(len(one) for one in sets.values())
    print(f"{described['artifact']}: {described['backend']} {described['precision']}, {pairs} pairs in "
          f"{seconds:.1f} s ({pairs / seconds:.0f} pairs/s, batch {args.batch})")
    table = fpr95_table(sets, scores)
    if table is not None:  # a Markdown table; the mean row only over several categories
        print(format_tables({"": table}, markdown=True, single_mean=False))
    if out is not None:
        write_scores(out, sets, scores)
        print(f"scores -> {out}")
    if args.json:
        from rrl_edge.atomic import write_json

        write_json({**described, "batch": args.batch, "pairs": pairs, "seconds": round(seconds, 3),
                    "categories": {name: len(one) for name, one in sets.items()},
                    "fpr95": None if table is None else table.to_json()}, args.json)
    return 0


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge run` on the CLI's sub-parsers."""
    from rrl_edge.runtime.registry import backend_choices

    p = sub.add_parser("run", help="score patch pairs with an engine, ONNX model or checkpoint (FPR95 if labelled)",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge run --model rrl.plan --data pairs.npy --out scores.csv"))
    inputs, outputs, settings = command_groups(p)
    model_input(inputs, ["--engine"], "TensorRT engine (.plan/.engine), ONNX model (.onnx, FP32 or INT8) or checkpoint "
                "(.pt)", required=True)
    inputs.add_argument("--data", required=True, help="patch file (.npy, labels beside it optional), patch build "
                                                      "folder, or folder of registered image pairs (cut as in training)")
    inputs.add_argument("--labels", help="labels .npy for a patch file (default: found beside it)")
    inputs.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split of a folder (default %(default)s)")
    outputs.add_argument("--out", help="write every score here: .npy (float32, categories in order) or .csv")
    outputs.add_argument("--json", help="write the run's summary (backend, precision, pairs/s, FPR95) here")
    settings.add_argument("--batch", type=batch_size, default=64,
                          help="pairs per inference (split to the engine's maximum) (default %(default)s)")
    settings.add_argument("--backend", choices=backend_choices(), default="auto",
                          help="default: from the file (.plan -> TensorRT, .onnx -> ONNX Runtime on the CPU, .pt -> "
                               "PyTorch)")
    settings.add_argument("--threads", type=thread_count, help="CPU threads (ONNX Runtime, PyTorch)")
    settings.add_argument("--device", help="TensorRT: GPU index (default 0); PyTorch: cpu (default), cuda or cuda:N")
    polarity_option(settings)
    settings.add_argument("--no-manifest", action="store_true",
                          help="TensorRT: run an engine built elsewhere (trtexec) that has no rrl-edge manifest beside "
                               "it; nothing about where it came from is checked, only its own inputs and output "
                               "(`rrl-edge build` makes engines whose manifest is checked)")
    settings.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)
