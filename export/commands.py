"""The `export` and `build` sub-commands of `rrl-edge`.

Only argparse at import time: onnx, onnxruntime, torch and TensorRT load inside the handlers, so
`rrl-edge --help` and training never need them, and `rrl-edge build` runs on a Jetson without torch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional

from rrl_edge.argtypes import (HelpFormatter, command_groups, defaults_of, example, fpr95_budget, hidden_alias,
                               model_input, non_negative_int, polarity_option)


def _path(value: Optional[str]) -> Optional[Path]:
    return Path(value) if value else None


def _add_engine_options(p: "argparse._ArgumentGroup") -> None:
    from rrl_edge.export.tensorrt_build import BatchProfile, EngineRequest

    profile, request = defaults_of(BatchProfile), defaults_of(EngineRequest)
    p.add_argument("--fp16", action="store_true", default=request["fp16"],
                   help="let TensorRT use FP16 kernels (TensorRT 8.5-10.x)")
    p.add_argument("--min-batch", type=int, default=profile["min"],
                   help="smallest batch the engine accepts (default %(default)s)")
    p.add_argument("--opt-batch", type=int, default=profile["opt"],
                   help="batch the engine is tuned for (default %(default)s)")
    p.add_argument("--max-batch", type=int, default=profile["max"],
                   help="largest batch the engine accepts (default %(default)s)")
    p.add_argument("--workspace", type=int, default=request["workspace_mb"], metavar="MB",
                   help="TensorRT workspace limit (default %(default)s)")
    p.add_argument("--timing-cache", default=request["timing_cache"],
                   help="TensorRT timing cache file, reused between builds "
                        "(default: ~/.cache/rrl-edge/tensorrt/, one per TensorRT version and GPU)")


def _profile(args: argparse.Namespace):  # -> BatchProfile
    from rrl_edge.export.tensorrt_build import BatchProfile

    return BatchProfile(args.min_batch, args.opt_batch, args.max_batch)


def cmd_export(args: argparse.Namespace) -> int:
    from rrl_edge.export.pipeline import ExportOptions, run_export

    from rrl_edge.contracts import DEFAULT_ENGINE
    from rrl_edge.export.pipeline import ARTIFACTS
    from rrl_edge.data.patchfile import data_inputs
    from rrl_edge.paths import guard_outputs

    engine = args.engine or DEFAULT_ENGINE
    guard_outputs({"--model": [args.model], "--calib-data": data_inputs(args.calib_data),
                   "--eval-data": data_inputs(args.eval_data), "--timing-cache": [args.timing_cache]},
                  folders={"--out-dir": (args.out_dir, [*ARTIFACTS, engine, engine + ".json"])})
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_export(ExportOptions(
        out_dir=Path(args.out_dir), checkpoint=_path(args.model), int8=args.int8, fp16=args.fp16,
        calib_data=_path(args.calib_data), calib_samples=args.calib_samples, calib_method=args.calib_method,
        eval_data=_path(args.eval_data), proof_pairs=args.proof_pairs, proof_cut=args.proof_cut, budget=args.budget,
        seed=args.seed,
        profile=_profile(args), workspace_mb=args.workspace, engine=args.engine,
        timing_cache=_path(args.timing_cache), progress=not args.quiet, polarity=args.polarity,
    ))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from rrl_edge.export.tensorrt_build import EngineRequest, build_engine, manifest_path

    from rrl_edge.paths import guard_outputs

    guard_outputs({"--model": [args.model]}, files={"--engine": args.engine, "manifest": f"{args.engine}.json"})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = EngineRequest(Path(args.model), Path(args.engine), _profile(args), args.workspace, args.fp16,
                            _path(args.timing_cache), args.dla_core)
    manifest = build_engine(request)
    where = manifest.gpu_name if manifest.dla_core is None else f"DLA core {manifest.dla_core} of {manifest.gpu_name}"
    print(f"engine {request.engine} ({manifest.precision}, TensorRT {manifest.tensorrt_version} on "
          f"{where}); manifest {manifest_path(request.engine)}")
    if manifest.dla_core is not None:
        fallback = manifest.gpu_fallback_names or []
        print(f"DLA: {manifest.dla_layers} network layers can run on DLA core {manifest.dla_core}, "
              f"{manifest.gpu_fallback_layers} fall back to the GPU" + (f": {', '.join(fallback)}" if fallback else "")
              + f"; fixed batch {manifest.batch_opt}")
    return 0


def cmd_device_check(args: argparse.Namespace) -> int:
    from rrl_edge.export.device_check import format_report, run_device_check

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run_device_check(Path(args.deploy), Path(args.json), args.backend, _path(args.work_dir), args.budget,
                              show_progress=not args.quiet, dla_core=args.dla_core)
    print(format_report(report))
    print(f"report {args.json}")
    return 0 if report["passed"] else 1


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge export`, `rrl-edge build` and `rrl-edge device-check` on the CLI's sub-parsers."""
    from rrl_edge.calibration.quantize import METHODS  # the calibration registry: numpy at import
    from rrl_edge.contracts import DEFAULT_ENGINE
    from rrl_edge.export.options import ExportOptions
    from rrl_edge.export.parity import PROOF_CUTS

    opts = defaults_of(ExportOptions)
    p = sub.add_parser("export", help="ONNX (and INT8) models checked against PyTorch; the engine where TensorRT runs",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge export --int8 --out-dir deploy/ --calib-data ../shared/data/vis-nir"))
    inputs, outputs, settings = command_groups(p)
    model_input(inputs, ["--checkpoint"], "checkpoint (.pt) to export (default: the shipped joint VIS-NIR + VIS-LWIR "
                "model, eval's default)", default=opts["checkpoint"])
    inputs.add_argument("--calib-data", default=opts["calib_data"],
                        help="image-pair folder whose training split calibrates (default: shared VIS-NIR)")
    inputs.add_argument("--eval-data", default=opts["eval_data"],
                        help="image-pair folder whose test split is the proof (default: shared VIS-NIR)")
    outputs.add_argument("--out-dir", required=True, help="folder for rrl.onnx, rrl.int8.onnx, ... (created)")
    outputs.add_argument("--engine", default=opts["engine"], help="engine file name inside --out-dir (default %(default)s)")
    settings.add_argument("--int8", action="store_true", default=opts["int8"],
                          help="also calibrate INT8 models (TensorRT Q/DQ and ONNX Runtime CPU)")
    settings.add_argument("--calib-samples", type=int, default=opts["calib_samples"],
                          help="calibration pairs, even over categories and labels (default %(default)s)")
    settings.add_argument("--calib-method", choices=METHODS, default=opts["calib_method"],
                          help="activation ranges: 99.999th percentile of |x|, histogram entropy, or min-max "
                               "(default %(default)s)")
    settings.add_argument("--proof-cut", choices=PROOF_CUTS, default=opts["proof_cut"],
                          help="test pairs of the proof: eval's default cut (default) or the strongest-first cut")
    settings.add_argument("--proof-pairs", type=int, default=opts["proof_pairs"],
                          help="test pairs per category for the proof, half matching (default %(default)s = every "
                               "test pair)")
    settings.add_argument("--budget", type=fpr95_budget, default=opts["budget"],
                          help="FPR95 points the mean may move by, and beyond which no category may move beyond its "
                               "bootstrap interval (default %(default)s; rrl-edge parity --help gives the whole rule)")
    settings.add_argument("--seed", type=int, default=opts["seed"],
                          help="seed of the calibration and proof samples (default %(default)s)")
    polarity_option(settings)
    settings.add_argument("--quiet", action="store_true", default=not opts["progress"], help="no progress bars")
    _add_engine_options(settings)
    p.set_defaults(func=cmd_export)

    b = sub.add_parser("build", help="a TensorRT engine from an exported ONNX, on the GPU that will run it",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge build --model deploy/rrl.int8.onnx --engine rrl.plan"))
    inputs, outputs, settings = command_groups(b)
    model_input(inputs, ["--onnx"], "rrl.int8.onnx (INT8) or rrl.onnx (FP32/FP16) from `rrl-edge export`",
                required=True)
    outputs.add_argument("--engine", default=DEFAULT_ENGINE,
                         help="engine file to write; its manifest goes beside it (.json) (default %(default)s)")
    _add_engine_options(settings)
    settings.add_argument("--dla-core", type=non_negative_int, metavar="N",
                          help="build for DLA core N of a Jetson (TensorRT 8.5-10.x): needs --fp16 or rrl.int8.onnx "
                               "(the DLA has no FP32; INT8 also lets the float layers run FP16), falls back to the "
                               "GPU for layers the DLA cannot run, and fixes the batch at --opt-batch; the manifest "
                               "records how many layers can run on the DLA and which fall back")
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("device-check", help="on the target: build FP32/FP16/INT8 engines from an export folder, "
                                            "check FPR95 parity against PyTorch's scores, benchmark, inspect INT8",
                       formatter_class=HelpFormatter,
                       epilog=example("rrl-edge device-check --deploy deploy/ --json report.json"))
    inputs, outputs, settings = command_groups(d)
    inputs.add_argument("--deploy", required=True, help="the folder `rrl-edge export --int8 --out-dir` wrote")
    one = outputs.add_mutually_exclusive_group(required=True)  # --json, or its old spelling --report
    hidden_alias(one, "--report", one.add_argument("--json", metavar="REPORT", help="JSON report to write"))
    outputs.add_argument("--work-dir", help="where the engines are built (default: DEPLOY/engines)")
    settings.add_argument("--backend", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                          help="tensorrt (the device), or onnxruntime standing in for it on a machine without a GPU")
    settings.add_argument("--budget", type=fpr95_budget, help="FPR95 points per category and mean (default: the export's)")
    settings.add_argument("--dla-core", type=non_negative_int, metavar="N",
                          help="build and check the FP16 and INT8 engines on DLA core N of a Jetson (no FP32 on the "
                               "DLA); the report gives each engine's DLA and GPU-fallback layer counts")
    settings.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_device_check)
