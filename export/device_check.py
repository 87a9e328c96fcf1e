"""`rrl-edge device-check`: on the target, from the export folder alone, build and prove every engine.

The workstation's `rrl-edge export --int8 --out-dir deploy/` writes what the device needs: the ONNX models,
the test pairs (uint8), their labels, PyTorch's scores of them and the category ranges (rrl.reference.json).
On the device, one command, with numpy, TensorRT and pycuda only (no torch, onnx or scikit-learn):

1. builds FP32, FP16 and INT8 engines (rrl_edge.export.tensorrt_build) into ``--work-dir``;
2. scores every test pair with each and checks it against PyTorch's scores with `rrl-edge parity`'s rule
   (rrl_edge.runtime.parity.failures: the mean FPR95 within the export's budget, per-category bootstrap
   intervals, logit RMS, TPR at the operating point, decision agreement >= 99 %);
3. benchmarks each (latency per batch call, pairs/s);
4. inspects the INT8 engine (IEngineInspector, TensorRT >= 8.6) and fails when a convolution the Q/DQ
   graph quantizes does not run an INT8 kernel (a float fallback); on 8.5 the report says it was not checked;
5. writes one JSON report and prints a table. Exit 0 when everything holds, 1 when a check fails, 2 on bad
   input.

``--backend onnxruntime`` runs the same checks with ONNX Runtime standing in for TensorRT (rrl.onnx and
rrl.int8.onnx, no engines, no FP16): how it is tested on machines without a GPU.

It lives in export/ (layer 2), not runtime/, because it builds engines; it imports only numpy-free modules
at the top and keeps to Python 3.8 syntax (JetPack 5).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rrl_edge.atomic import write_json
from rrl_edge.contracts import (
    FP32_ONNX, INT8_ONNX, REFERENCE, REFERENCE_SCORES, TEST_LABELS, TEST_PAIRS, sha256_file, split_pair_batch,
)
from rrl_edge.errors import InputError
from rrl_edge.runtime.parity import compare
from rrl_edge.runtime.registry import make_runner
from rrl_edge.runtime.runner import Runner, score_pairs

BACKENDS = ("tensorrt", "onnxruntime")
BENCH_BATCH = 64
BENCH_RUNS = 20


def load_reference(deploy: Path) -> Tuple[Dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """rrl.reference.json and its arrays, each checked against the sha256 the export recorded."""
    path = deploy / REFERENCE
    if not path.is_file():
        raise InputError(f"{path}: missing; write it on the workstation with `rrl-edge export --int8 --out-dir {deploy}`")
    try:
        ref = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(ref, dict) or ref.get("format") != "rrl-edge-reference":
        raise InputError(f"{path}: not an rrl-edge reference file")
    arrays = []
    for name in (TEST_PAIRS, TEST_LABELS, REFERENCE_SCORES):
        file = deploy / name
        if not file.is_file():
            raise InputError(f"{file}: missing (written by `rrl-edge export`)")
        if sha256_file(file) != ref.get("files", {}).get(name):
            raise InputError(f"{file}: sha256 differs from {path.name}: the export's files were changed or mixed")
        arrays.append(np.load(file, mmap_mode="r", allow_pickle=False))
    pairs, labels, scores = arrays
    n = len(pairs)
    categories = ref.get("categories")
    if (len(labels) != n or len(scores) != n or not isinstance(categories, list) or not categories
            or sum(int(c["stop"]) - int(c["start"]) for c in categories) != n):
        raise InputError(f"{path}: its categories, pairs ({n}), labels ({len(labels)}) and scores ({len(scores)}) disagree")
    return ref, np.asarray(pairs), np.asarray(labels), np.asarray(scores, dtype=np.float32)


def _split(categories: List[Dict[str, Any]], values: np.ndarray) -> Dict[str, np.ndarray]:
    return {c["name"]: values[int(c["start"]) : int(c["stop"])] for c in categories}


def _bench(runner: Runner, pairs: np.ndarray, batch: int) -> Dict[str, Any]:
    vis, other = split_pair_batch(pairs[:batch])
    for _ in range(3):
        runner.infer(vis, other)
    times = []
    for _ in range(BENCH_RUNS):
        started = time.perf_counter()
        runner.infer(vis, other)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return {"batch": len(vis), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "pairs_per_s": round(len(vis) / float(np.mean(ms)) * 1e3, 1)}


def int8_kernels(info: Optional[Dict[str, Any]], convs: List[str]) -> Dict[str, Any]:
    """From the engine inspector's JSON: which of the Q/DQ graph's quantized convolutions run an INT8
    kernel (a layer whose name holds the ONNX node's and whose input format says Int8)."""
    if info is None:
        return {"checked": False, "why": "TensorRT 8.5: the engine inspector is not used before 8.6; parity only"}
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    if layers and all(isinstance(layer.get("Inputs"), list) and not layer["Inputs"] for layer in layers):
        return {"checked": False, "why": "the engine has no detailed layer information (built without DETAILED)"}
    float_convs = []
    for conv in convs:
        owners = [layer for layer in layers if conv in str(layer.get("Name", ""))]
        formats = [str(t.get("Format/Datatype", t.get("DataType", ""))).lower()
                   for layer in owners for t in layer.get("Inputs", []) if isinstance(t, dict)]
        if not any("int8" in f for f in formats):
            float_convs.append(conv)
    return {"checked": True, "quantized_convs": len(convs), "int8": len(convs) - len(float_convs),
            "not_int8": float_convs, "passed": not float_convs and bool(convs)}


def _candidates(deploy: Path, work: Path, backend: str) -> List[Tuple[str, Path, str]]:
    """(name, artifact, how it was made) per precision; builds the engines on TensorRT."""
    fp32, int8 = deploy / FP32_ONNX, deploy / INT8_ONNX
    for path in (fp32, int8):
        if not path.is_file():
            raise InputError(f"{path}: missing (written by `rrl-edge export --int8`)")
    if backend == "onnxruntime":
        return [("fp32", fp32, "onnxruntime"), ("int8", int8, "onnxruntime")]
    from rrl_edge.export.tensorrt_build import EngineRequest, build_engine

    work.mkdir(parents=True, exist_ok=True)
    out = []
    for name, onnx, fp16 in (("fp32", fp32, False), ("fp16", fp32, True), ("int8", int8, False)):
        engine = work / f"rrl.{name}.plan"
        manifest = build_engine(EngineRequest(onnx, engine, fp16=fp16, timing_cache=work / "timing.cache"))
        out.append((name, engine, f"TensorRT {manifest.tensorrt_version} {manifest.precision} on {manifest.gpu_name}"))
    return out


def run_device_check(deploy: Path, report_path: Path, backend: str = "tensorrt", work_dir: Optional[Path] = None,
                     budget: Optional[float] = None, show_progress: bool = True) -> Dict[str, Any]:
    """Every check above; returns the report (also written to ``report_path``) with ``passed``."""
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    ref, pairs, labels, reference = load_reference(deploy)
    budget = float(ref.get("budget", 0.3)) if budget is None else budget
    categories = ref["categories"]
    by_labels, by_reference = _split(categories, labels), _split(categories, reference)
    report: Dict[str, Any] = {"format": "rrl-edge-device-check", "deploy": str(deploy), "backend": backend,
                              "pairs": int(len(pairs)), "budget": budget, "candidates": {}}
    passed = True
    for name, artifact, made in _candidates(deploy, work_dir or deploy / "engines", backend):
        with make_runner(artifact, backend) as runner:
            scores = score_pairs(runner, pairs, 256, show_progress, f"{name} {backend}")
            result = compare(by_labels, by_reference, _split(categories, scores), budget)
            entry: Dict[str, Any] = {"artifact": str(artifact), "made": made, "parity": result,
                                     "bench": _bench(runner, pairs, BENCH_BATCH)}
            ok = result["passed"]
            if name == "int8" and backend == "tensorrt":
                info = runner.layer_information()  # type: ignore[attr-defined]
                entry["int8_kernels"] = int8_kernels(info, list(ref.get("int8_convs", [])))
                ok = ok and entry["int8_kernels"].get("passed", True)
            elif name == "int8":
                entry["int8_kernels"] = {"checked": False, "why": "ONNX Runtime stands in for TensorRT: no engine"}
        entry["passed"] = bool(ok)
        passed = passed and ok
        report["candidates"][name] = entry
    report["passed"] = passed
    write_json(report, report_path)
    return report


def format_report(report: Dict[str, Any]) -> str:
    lines = [f"device check ({report['backend']}, {report['pairs']} test pairs, budget {report['budget']} FPR95 points)",
             f"{'engine':<6} {'mean FPR95':>10} {'ref':>6} {'logit RMS':>9} {'agree %':>8} {'p50 ms@64':>9} "
             f"{'pairs/s':>8} {'INT8 convs':>10}  verdict"]
    for name, c in report["candidates"].items():
        p, b, k = c["parity"], c["bench"], c.get("int8_kernels", {})
        kern = f"{k['int8']}/{k['quantized_convs']}" if k.get("checked") else "-"
        lines.append(f"{name:<6} {p['mean_fpr95']:>10.2f} {p['mean_fpr95_reference']:>6.2f} {p['logit_rms']:>9.3f} "
                     f"{100 * p['agreement']:>8.2f} {b['p50_ms']:>9.2f} {b['pairs_per_s']:>8.0f} {kern:>10}  "
                     f"{'ok' if c['passed'] else 'FAILED'}")
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)
