"""`rrl-edge bench ART [ART ...] --batch 1,8,64,256 [--json F] [--plot F.png]`: speed and memory per batch size.

A checkpoint is timed as PyTorch eager, the baseline the other artifacts are compared with in the same run.
Runs on the device too (numpy plus the artifacts' backends; matplotlib only for --plot).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rrl_edge.argtypes import (HelpFormatter, at_most, bench_iters, bench_warmup, command_groups, defaults_of, example,
                               non_negative_float, non_negative_int)
from rrl_edge.limits import MAX_BENCH_SECONDS, MAX_THREADS
from rrl_edge.errors import InputError


def _batches(text: str):  # -> Tuple[int, ...]
    from rrl_edge.runtime.bench import parse_batches

    try:
        return parse_batches(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from rrl_edge.atomic import write_json
    from rrl_edge.runtime.bench import BenchConfig, check_artifact, format_table, make_input, plot_bench, run_bench, to_json

    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import guard_outputs

    for artifact in args.artifacts:  # fail on a bad name before loading data
        check_artifact(artifact, args.backend)
    guard_outputs({"ART": args.artifacts, "--data": data_inputs(args.data)},
                  files={"--json": args.json, "--plot": args.plot})
    if args.iters < 1:
        raise InputError(f"--iters must be at least 1, got {args.iters}")
    config = BenchConfig(batches=args.batch, threads=args.threads or 0, seconds=args.seconds,
                         min_iters=args.iters, warmup=args.warmup, backend=args.backend)
    bench_input = make_input(max(config.batches), args.data, args.seed, show_progress=not args.quiet)
    report = run_bench(args.artifacts, config, bench_input, show_progress=not args.quiet)
    print(format_table(report))
    if args.json:
        print(f"JSON: {write_json(to_json(report), Path(args.json))}")
    if args.plot:
        print(f"plot: {plot_bench(report, Path(args.plot))}")
    return 0


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge bench` on the CLI's sub-parsers."""
    from rrl_edge.runtime.bench import BenchConfig
    from rrl_edge.runtime.registry import backend_choices

    config = defaults_of(BenchConfig)
    p = sub.add_parser("bench", help="latency (p50, p99), pairs/s and peak memory per artifact and batch size",
                       description="Latency (p50, p99 per batch call), pairs/s and peak memory of each artifact at "
                                   "each batch size, each artifact in its own process; a checkpoint runs as "
                                   "PyTorch eager and is the baseline of the ratios.",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge bench rrl_edge/weights/rrlnet_visnir.pt deploy/rrl.onnx "
                                      "--batch 1,8,64,256 --json bench.json"))
    inputs, outputs, settings = command_groups(p)
    inputs.add_argument("artifacts", nargs="+", metavar="ART",
                        help="engines (.plan/.engine), ONNX models (.onnx) or checkpoints (.pt: PyTorch eager, the "
                             "baseline)")
    inputs.add_argument("--data", help="time real test pairs from a patch file, patch build or image-pair folder "
                                       "(default: seeded random uint8 pairs; timing does not depend on the pixels)")
    outputs.add_argument("--json", help='write {"results": [{artifact, backend, precision, batch, p50_ms, p99_ms, '
                                        'pairs_per_s, ...}], ...} here')
    outputs.add_argument("--plot", help="write latency and pairs/s against batch size (PNG) here")
    settings.add_argument("--batch", type=_batches, default=config["batches"],
                          help=f"comma-separated batch sizes (default {','.join(map(str, config['batches']))})")
    settings.add_argument("--threads", type=at_most(non_negative_int, MAX_THREADS, "a thread count"),
                          default=config["threads"], help="CPU threads for every backend (default: all cores)")
    settings.add_argument("--seconds", type=at_most(non_negative_float, MAX_BENCH_SECONDS, "--seconds"),
                          default=config["seconds"],
                          help="minimum timed seconds per artifact and batch (default %(default)s)")
    settings.add_argument("--iters", type=bench_iters, default=config["min_iters"],
                          help="minimum timed runs per artifact and batch (default %(default)s)")
    settings.add_argument("--warmup", type=bench_warmup, default=config["warmup"],
                          help="untimed runs first (default %(default)s)")
    settings.add_argument("--backend", choices=backend_choices(), default=config["backend"],
                          help="backend for every artifact (default: by file suffix)")
    settings.add_argument("--seed", type=int, default=0, help="seed of the random or sampled pairs (default %(default)s)")
    settings.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)
