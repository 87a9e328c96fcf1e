"""`rrl-edge export`: checkpoint -> checked ONNX (-> INT8 Q/DQ + CPU INT8) -> engine where TensorRT exists.

Everything is written into a staging folder inside ``--out-dir`` and moved into place only when every
check passed, so a failed export (bad input, a score mismatch, INT8 over budget) leaves no half of a
model set behind. The engine is built last, from the installed ONNX, only where TensorRT and a GPU exist.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rrl_edge.calibration.quantize import CPU, METHODS, TENSORRT, quantize
from rrl_edge.calibration.sampling import CalibrationSet, load_calibration_sets, select_samples
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.atomic import atomic_write_bytes, signals_deferred, write_json
from rrl_edge.errors import ExportError
from rrl_edge.contracts import (
    CALIB_CPU_RANGES,
    CALIB_MANIFEST,
    CALIB_RANGES,
    CALIB_SAMPLES,
    DEFAULT_ENGINE,
    FP32_ONNX,
    INT8_CPU_ONNX,
    INT8_ONNX,
    REFERENCE,
    REFERENCE_SCORES,
    REPORT,
    TEST_LABELS,
    TEST_PAIRS,
    sha256_file,
)
from rrl_edge.contracts import INPUT_NAMES, OPSET, OUTPUT_NAME
from rrl_edge.export.parity import MIN_FP32_PAIRS, PROOF_CUTS, fp32_proof, format_parity, int8_parity, proof_sets
from rrl_edge.export.options import PROOF_PAIRS_PER_CATEGORY, ExportOptions  # noqa: F401  (re-exported)
from rrl_edge.export.tensorrt_build import EngineRequest, build_engine, tensorrt_status
from rrl_edge.fpr95_table import FPR95Table

ARTIFACTS = (FP32_ONNX, INT8_ONNX, INT8_CPU_ONNX, CALIB_RANGES, CALIB_CPU_RANGES, CALIB_SAMPLES, CALIB_MANIFEST, REPORT,
             TEST_PAIRS, TEST_LABELS, REFERENCE_SCORES, REFERENCE)


def _say(message: str) -> None:
    print(message, flush=True)


def _default_visnir() -> Path:
    from rrl_edge.data.build import default_dataset

    return default_dataset()


def validate(opts: ExportOptions) -> None:
    """Every check on the flags that needs no file read: fail before anything is written."""
    opts.profile.check()
    if opts.out_dir.exists() and not opts.out_dir.is_dir():
        raise ExportError(f"--out-dir {opts.out_dir}: is a file, expected a folder")
    if opts.calib_samples < 1:
        raise ExportError(f"--calib-samples {opts.calib_samples}: must be at least 1")
    if opts.calib_method not in METHODS:
        raise ExportError(f"--calib-method {opts.calib_method!r}: expected one of {', '.join(METHODS)}")
    if not opts.budget >= 0:
        raise ExportError(f"--budget {opts.budget}: must be a non-negative number of FPR95 points")
    if opts.proof_cut not in PROOF_CUTS:
        raise ExportError(f"--proof-cut {opts.proof_cut!r}: expected one of {', '.join(PROOF_CUTS)}")
    if opts.proof_pairs < 0:
        raise ExportError(f"--proof-pairs {opts.proof_pairs}: must be 0 (all) or positive")
    if opts.workspace_mb < 1:
        raise ExportError(f"--workspace {opts.workspace_mb}: must be at least 1 MB")
    if not opts.engine or Path(opts.engine).name != opts.engine:
        raise ExportError(f"--engine {opts.engine!r}: a file name inside --out-dir, without folders")


def _load_proof_sets(opts: ExportOptions) -> Dict[str, PatchSet]:
    from rrl_edge.data.build import STRONGEST_CUT, PatchConfig
    from rrl_edge.patch_sources import load_sets

    source = opts.eval_data or _default_visnir()
    cut = STRONGEST_CUT if opts.proof_cut == "strongest" else PatchConfig()
    sets, _ = load_sets(source, "test", cut, progress=opts.progress)
    proof = proof_sets(sets, opts.proof_pairs, opts.seed)
    total = sum(len(ps) for ps in proof.values())
    if total < MIN_FP32_PAIRS:
        raise ExportError(f"the proof needs at least {MIN_FP32_PAIRS} test pairs; {source} gives {total} "
                          f"with --proof-pairs {opts.proof_pairs}")
    return proof


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "onnx", "onnxruntime", "onnxsim", "onnxslim"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# Written last and removed first when a folder is replaced: while they are absent the folder is an incomplete export
# (device-check and parity refuse it) instead of a mix of two exports that the old report vouches for.
BINDING = (REFERENCE, REPORT)


def _install(staging: Path, out_dir: Path, produced: List[str], engine: str) -> None:
    """Move the staged artifacts into ``out_dir``; drop what an earlier export left that no longer matches.

    That is its artifacts this export did not make, and its engine: it was built from the replaced ONNX. Ctrl-C and
    SIGTERM wait until the moves are done; after a SIGKILL in between, the folder lacks its report and reference
    (BINDING) and is refused as incomplete rather than read as the old export.
    """
    with signals_deferred():
        for name in (*BINDING, engine, engine + ".json"):
            (out_dir / name).unlink(missing_ok=True)
        for name in ARTIFACTS:
            if name not in produced:
                (out_dir / name).unlink(missing_ok=True)
        for name in sorted(produced, key=lambda n: n in BINDING):
            os.chmod(staging / name, 0o644)  # ONNX Runtime writes its calibration files 0600
            os.replace(staging / name, out_dir / name)



def run_export(opts: ExportOptions) -> Dict[str, Any]:
    """The whole export; returns the report (also written as export_report.json). Raises ExportError."""
    import onnx

    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.graph_check import require_tensorrt_compatible
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with

    started = time.time()
    validate(opts)
    model, meta = load_model(opts.checkpoint, opts.polarity)
    calib: Optional[CalibrationSet] = None
    if opts.int8:
        calib_dir = opts.calib_data or _default_visnir()
        calib_sets, info = load_calibration_sets(calib_dir, progress=opts.progress)
        calib = select_samples(calib_sets, opts.calib_samples, opts.seed, source=str(info.get("source", calib_dir)))
    proof = _load_proof_sets(opts)
    labels = {c: ps.labels for c, ps in proof.items()}
    total = sum(len(ps) for ps in proof.values())
    _say(f"model {meta['path']} (width {meta['config']['width']}, polarity {meta['config']['polarity']}); proof on {total} real test pairs "
         f"({', '.join(f'{c} {len(ps)}' for c, ps in proof.items())})")

    created = not opts.out_dir.exists()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    from rrl_edge.paths import pid_tag, sweep_stale

    sweep_stale(opts.out_dir, [".export-*"])  # staging folders of killed exports
    staging = Path(tempfile.mkdtemp(prefix=f".export-{pid_tag()}-", dir=opts.out_dir))
    try:
        proto = export_onnx(model, staging / "exported.onnx")
        first = next(iter(proof.values())).patches[:256]
        simplify = simplify_onnx(proto, staging / FP32_ONNX, first)
        _say(f"ONNX opset {OPSET}: {simplify['nodes_before']} nodes, {simplify['tool']} -> {simplify['nodes_after']}")
        require_tensorrt_compatible(onnx.load(str(staging / FP32_ONNX)), FP32_ONNX)

        reference = {c: score_with(model, ps.patches, 256, opts.progress, f"PyTorch {c}") for c, ps in proof.items()}
        fp32_session = cpu_session(staging / FP32_ONNX)
        fp32_scores = {c: score_with(fp32_session, ps.patches, 256, opts.progress, f"ONNX {c}") for c, ps in proof.items()}
        fp32 = fp32_proof(reference, fp32_scores)
        _say(f"FP32 ONNX vs PyTorch on {fp32.pairs} pairs: max |score difference| {fp32.max_abs_diff:.2e} "
             f"(limit {fp32.to_dict()['tolerance']})")
        if not fp32.passed:
            raise ExportError(f"the FP32 ONNX scores differ from PyTorch by {fp32.max_abs_diff:.3g} (> 1e-4); nothing written")

        produced = [FP32_ONNX]
        report: Dict[str, Any] = {
            "format": "rrl-edge-export",
            "checkpoint": meta["path"],
            "model_config": meta["config"],
            "opset": OPSET,
            "inputs": list(INPUT_NAMES),
            "output": OUTPUT_NAME,
            "versions": _versions(),
            "simplify": simplify,
            "proof_data": {"split": "test", "cut": opts.proof_cut, "pairs": {c: len(ps) for c, ps in proof.items()},
                           "seed": opts.seed},
            "fp32": fp32.to_dict(),
            # each artifact's FPR95Table (rrl_edge.fpr95_table) on the proof pairs; the INT8 ones come from their proof
            "fpr95": {"pytorch": FPR95Table.from_scores(labels, reference, opts.proof_cut).to_json(),
                      "onnx-fp32": FPR95Table.from_scores(labels, fp32_scores, opts.proof_cut).to_json()},
        }
        if calib is not None:
            int8, files = _int8(opts, calib, staging, labels, reference, proof)
            report["fpr95"].update(int8.pop("fpr95"))
            report.update(int8)
            produced += files
        produced += _device_files(staging, proof, reference, opts.budget)
        report["files"] = {name: sha256_file(staging / name) for name in produced}
        report["export_seconds"] = round(time.time() - started, 1)
        write_json(report, staging / REPORT)
        _install(staging, opts.out_dir, produced + [REPORT], opts.engine)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(opts.out_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    _say(f"wrote {', '.join(produced + [REPORT])} to {opts.out_dir} in {report['export_seconds']:.0f} s")
    _engine(opts)
    return report


def _device_files(staging: Path, proof: Mapping[str, PatchSet], reference: Mapping[str, np.ndarray],
                  budget: float) -> List[str]:
    """What `rrl-edge device-check` needs on a device without torch or onnx: the proof's test pairs, their
    labels and PyTorch's scores (numpy files), the category ranges, and the quantized convolutions of
    rrl.int8.onnx (whose engine layers must run INT8)."""
    import onnx


    categories, start = [], 0
    for name, ps in proof.items():
        categories.append({"name": name, "start": start, "stop": start + len(ps)})
        start += len(ps)
    arrays = {TEST_PAIRS: np.concatenate([ps.patches for ps in proof.values()]).astype(np.uint8),
              TEST_LABELS: np.concatenate([ps.labels for ps in proof.values()]).astype(np.uint8),
              REFERENCE_SCORES: np.concatenate([reference[c] for c in proof]).astype(np.float32)}
    for name, array in arrays.items():
        with open(staging / name, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    int8_convs: List[str] = []
    if (staging / INT8_ONNX).is_file():
        proto = onnx.load(str(staging / INT8_ONNX))
        producers = {o: n for n in proto.graph.node for o in n.output}
        int8_convs = [n.name for n in proto.graph.node if n.op_type == "Conv" and producers.get(n.input[0]) is not None
                      and producers[n.input[0]].op_type == "DequantizeLinear"]
    # the models the reference scores belong to are recorded too: a folder that mixes two exports is refused
    models = [name for name in (FP32_ONNX, INT8_ONNX) if (staging / name).is_file()]
    write_json({"format": "rrl-edge-reference", "reference": "pytorch", "categories": categories, "budget": budget,
                "files": {name: sha256_file(staging / name) for name in [*arrays, *models]}, "int8_convs": int8_convs},
               staging / REFERENCE)
    return list(arrays) + [REFERENCE]


def _int8(
    opts: ExportOptions,
    calib: CalibrationSet,
    staging: Path,
    labels: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    proof: Mapping[str, PatchSet],
) -> Tuple[Dict[str, Any], List[str]]:
    """Calibrate both INT8 models, check the Q/DQ graph and measure both against PyTorch.

    Raises when the Q/DQ model (the engine's source) is over budget; the CPU model is left out when it is.
    Returns the report's INT8 part and the staged files to install.
    """
    import onnx

    from rrl_edge.export.graph_check import require_tensorrt_compatible
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with

    atomic_write_bytes(staging / CALIB_SAMPLES, calib.npy_bytes())
    write_json(calib.manifest(), staging / CALIB_MANIFEST)
    _say(f"calibrating on {len(calib.pairs)} training pairs ({opts.calib_method}), sha256 {calib.sha256[:16]}...")
    parity: Dict[str, Any] = {}
    for flavour, name, ranges in ((TENSORRT, INT8_ONNX, CALIB_RANGES), (CPU, INT8_CPU_ONNX, CALIB_CPU_RANGES)):
        quantize(staging / FP32_ONNX, staging / name, calib.pairs, flavour, opts.calib_method, staging / ranges)
        proto = onnx.load(str(staging / name))
        for key, value in (("flavour", flavour.name), ("calibration_method", opts.calib_method),
                           ("calibration_sha256", calib.sha256), ("calibration_ranges", ranges)):
            proto.metadata_props.add(key=f"rrl_edge.{key}", value=value)
        atomic_write_bytes(staging / name, proto.SerializeToString())
        if flavour is TENSORRT:
            require_tensorrt_compatible(proto, name)
        session = cpu_session(staging / name)
        scores = {c: score_with(session, ps.patches, 256, opts.progress, f"{name} {c}") for c, ps in proof.items()}
        parity[flavour.name] = int8_parity(labels, reference, scores, opts.budget, opts.proof_cut)
    _say(format_parity(parity, f"{sum(len(ps) for ps in proof.values())} test pairs ({opts.proof_cut} cut)"))
    if not parity[TENSORRT.name]["passed"]:
        raise ExportError(f"INT8 fails the proof: {'; '.join(parity[TENSORRT.name]['failures'])}; no model written "
                          "and no engine built (try --calib-method or more --calib-samples; docs/int8-proof.md)")
    produced = [INT8_ONNX, CALIB_RANGES, CALIB_SAMPLES, CALIB_MANIFEST]
    if parity[CPU.name]["passed"]:
        produced += [INT8_CPU_ONNX, CALIB_CPU_RANGES]
    else:  # an extra for ONNX Runtime on CPUs: left out rather than shipped failing the proof
        _say(f"{INT8_CPU_ONNX} left out: {'; '.join(parity[CPU.name]['failures'])}; on a CPU use {FP32_ONNX}")
    part = {
        "calibration": {**calib.manifest(), "method": opts.calib_method,
                        "flavours": {TENSORRT.name: INT8_ONNX, CPU.name: INT8_CPU_ONNX}},
        "int8": parity,
        "budget": opts.budget,
        "fpr95": {k: p["fpr95_tables"]["candidate"] for k, p in parity.items()},  # measured by the proof
    }
    return part, produced


def _engine(opts: ExportOptions) -> None:
    onnx_path = opts.out_dir / (INT8_ONNX if opts.int8 else FP32_ONNX)
    ok, status = tensorrt_status()
    if not ok:
        _say(f"no TensorRT engine here ({status}): build it on the target with "
             f"`rrl-edge build --model {onnx_path} --engine {opts.engine}`")
        return
    request = EngineRequest(onnx_path, opts.out_dir / opts.engine, opts.profile, opts.workspace_mb, opts.fp16,
                            opts.timing_cache)
    manifest = build_engine(request)
    _say(f"engine {request.engine} ({manifest.precision}, {status}) and {request.engine.name}.json")
