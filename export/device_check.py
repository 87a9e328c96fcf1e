"""`rrl-edge device-check`: on the target, from the export folder alone, build and prove every engine.

The workstation's `rrl-edge export --int8 --out-dir deploy/` writes what the device needs: the ONNX models,
the test pairs (uint8), their labels, PyTorch's scores of them and the category ranges (rrl.reference.json).
On the device, one command, with numpy, TensorRT and pycuda only (no torch, onnx or scikit-learn):

1. builds FP32, FP16 and INT8 engines (rrl_edge.export.tensorrt_build) into ``--work-dir``, reusing a timing
   cache there named for the TensorRT version and GPU (a JetPack upgrade starts a new one). TensorRT 11 has
   no FP16 builder flag: FP16 is skipped there, and the report says why. With ``--dla-core N`` the FP16 and
   INT8 engines are built for that DLA core (the DLA has no FP32), and the report gives each engine's DLA /
   GPU-fallback layer counts;
2. scores every test pair with each and checks it against PyTorch's scores with `rrl-edge parity`'s rule
   (rrl_edge.runtime.parity.failures: the mean FPR95 within the export's budget, per-category bootstrap
   intervals, logit RMS, TPR at the operating point, decision agreement >= 99 %);
3. benchmarks each (latency per batch call, pairs/s);
4. inspects the INT8 engine (IEngineInspector, every supported TensorRT) and fails when a convolution the
   Q/DQ graph quantizes does not run an INT8 kernel (a float fallback); what the inspector cannot show (a
   names-only report, convolutions compiled into a Myelin or DLA region) is reported as not checked;
5. writes one JSON report and prints a table. Exit 0 when everything holds, 1 when a check fails, 2 on bad
   input.

``--backend onnxruntime`` runs the same checks with ONNX Runtime standing in for TensorRT (rrl.onnx and
rrl.int8.onnx, no engines, no FP16): how it is tested on machines without a GPU.

It lives in export/ (layer 2), not runtime/, because it builds engines; it imports only numpy-free modules
at the top and keeps to Python 3.8 syntax (JetPack 5).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rrl_edge.atomic import write_json
from rrl_edge.contracts import (
    FP32_ONNX, INT8_ONNX, REFERENCE, REFERENCE_SCORES, TEST_LABELS, TEST_PAIRS, sha256_file, split_pair_batch,
)
from rrl_edge.errors import ExportError, InputError
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
    for name in (FP32_ONNX, INT8_ONNX):  # the models these scores were proven for (recorded since v0.2.0)
        recorded, file = ref.get("files", {}).get(name), deploy / name
        if recorded and file.is_file() and sha256_file(file) != recorded:
            raise InputError(f"{file}: is not the model {path.name} was written for: the folder mixes two exports; "
                             "export again into an empty folder")
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


# ---- the INT8-kernel check: engine inspector JSON -> which quantized convolutions run INT8 ----
#
# Layer names, as TensorRT writes them (real engines):
#   "model.model.backbone0.conv.weight + /model/backbone0/conv/_weight_quantizer/QuantizeLinear + /model/backbone0/conv/Conv"
#       a fusion joins the ONNX node names with " + " (TensorRT 8.x trtexec --verbose, Q/DQ YOLO engine: "Engine
#       Layer Information" and "Layers" of a Chinese blog post on Q/DQ ONNX with trtexec, 2024);
#   "a + b || c + d"                       horizontally merged layers ("Merging layers: ... || ...", same log);
#   "PWN(PWN(/m/act/Sigmoid), PWN(/m/act/Mul))"    a pointwise fusion (TensorRT 10 inspector table, YOLO);
#   "{ForeignNode[/a/Split_16.../a/Add]}"  a Myelin (GPU) or DLA region: only its first and last node are named,
#       the ones between are not ("[DlaLayer] {ForeignNode[conv1_1...pool5]}", trtexec on a Jetson);
#   "Reformatting CopyNode for Input Tensor 1 to /m/proj/conv/Conv + /m/Add"   a copy in front of a layer, not
#       the layer (same TensorRT 10 table), and the Q node's own Reformat layer ("LayerType": "Reformat",
#       "Origin": "QDQ"): neither runs the convolution, so neither may vouch for its kernel;
#   "/model_10/m/m_0/attn/MatMul_myl109_2" a kernel inside an expanded Myelin region (TensorRT 10: '.' -> '_'
#       and a "_myl<region>_<n>" suffix).
# A node name therefore matches a layer only as a whole token between these separators: "/m/Conv" never
# matches "/m/Conv_1" nor "/x/m/Conv". The input formats are "Format/Datatype" up to 10.x ("Row major Int8
# format", "Thirty-two wide channel vectorized row major Int8 format"; Engine Inspector, TensorRT Developer
# Guide; TREx trex/activations.py), split into "Format" and "DataType" in 11.x (TensorRT 10.x to 11.x
# migration guide, IEngineInspector JSON output): all of them are read.

_BEFORE = r"(?:^|(?<=[ (\[,\x1e\x1f])|(?<=\.\.\.))"  # a node name starts the layer name or follows a separator
_AFTER = r"(?=$|[ ),\]\x1e\x1f]|\.\.\.)"  # and ends it or precedes one
_FORMAT_KEYS = ("Format/Datatype", "Format/DataType", "DataType", "Format")
_TYPE_WORDS = ("int8", "fp32", "fp16", "float", "half", "int32", "bf16", "bfloat16", "fp8", "int64", "uint8", "bool")


def names_node(layer_name: str, node: str) -> bool:
    """Whether TensorRT layer ``layer_name`` includes ONNX node ``node`` as a whole name (see above)."""
    if re.search(_BEFORE + re.escape(node) + _AFTER, layer_name):
        return True
    myelin = re.escape(node.replace(".", "_")) + r"_myl\d+_\d+"
    return re.search(_BEFORE + myelin + _AFTER, layer_name) is not None


def _is_reformat(layer: Dict[str, Any]) -> bool:
    name = str(layer.get("Name", ""))
    return name.startswith("Reformatting CopyNode") or str(layer.get("LayerType", "")) == "Reformat"


def _is_foreign(layer: Dict[str, Any]) -> bool:
    return "{ForeignNode[" in str(layer.get("Name", ""))


def _is_region(layer: Dict[str, Any]) -> bool:
    """A ForeignNode, a layer named after one (its reformats), or a kernel of an expanded Myelin region."""
    name = str(layer.get("Name", ""))
    return _is_foreign(layer) or "__myl_" in name or re.search(r"_myl\d+_\d+", name) is not None


def _input_formats(layer: Dict[str, Any]) -> List[str]:
    """What the layer's inputs say of their type, lower case (every format key TensorRT has used)."""
    out = []
    for tensor in layer.get("Inputs", []) or []:
        if isinstance(tensor, dict):
            out.append(" ".join(str(tensor[k]) for k in _FORMAT_KEYS if k in tensor).lower())
    return out


def _detailed(layers: List[Any]) -> bool:
    """A report with per-layer inputs (ProfilingVerbosity.DETAILED), not layer names only."""
    return any(isinstance(layer, dict) and isinstance(layer.get("Inputs"), list) and layer["Inputs"] for layer in layers)


def int8_kernels(info: Optional[Dict[str, Any]], convs: List[str]) -> Dict[str, Any]:
    """From the engine inspector's JSON: which of the Q/DQ graph's quantized convolutions run an INT8 kernel
    (a layer that names the node as a whole name, not a reformat, whose input data type is Int8).

    ``checked`` False, with ``why``, where the inspector cannot tell: no inspector, a names-only report
    (ProfilingVerbosity LAYER_NAMES_ONLY, an engine built elsewhere), or no convolution it can show. A
    convolution only inside a ForeignNode (Myelin or DLA region), or absent by name from an engine that has
    such regions (its range names only its ends), is "not_checked": the region is compiled as one unit and the
    inspector gives no per-convolution precision, so claiming INT8 or float for it would be a guess. A
    convolution whose owning layers report no data type (e.g. "N/A due to dynamic shapes") is not_checked too.
    ``passed`` needs every checked convolution in INT8 and at least one checked."""
    if info is None:
        return {"checked": False, "why": "this TensorRT's Python bindings have no engine inspector "
                                         "(ICudaEngine.create_engine_inspector)"}
    raw = info.get("Layers", [])
    raw = raw if isinstance(raw, list) else []
    if not _detailed(raw):
        kind = "layer names only" if any(isinstance(x, str) for x in raw) else "no per-layer inputs"
        return {"checked": False, "why": f"the engine inspector gives {kind} (an engine built without "
                                         "ProfilingVerbosity.DETAILED, e.g. elsewhere); parity only"}
    layers = [x for x in raw if isinstance(x, dict)]
    regions = [x for x in layers if _is_region(x)]
    float_convs: List[str] = []
    opaque: List[str] = []
    missing: List[str] = []
    int8 = 0
    for conv in convs:
        named = [x for x in layers if names_node(str(x.get("Name", "")), conv)]
        owners = [x for x in named if not _is_reformat(x) and not _is_foreign(x)]
        if not owners:
            in_region = any(_is_foreign(x) for x in named) or bool(regions)
            (opaque if in_region else missing).append(conv)
            continue
        formats = [f for x in owners for f in _input_formats(x)]
        if any("int8" in f for f in formats):
            int8 += 1
        elif any(word in f for f in formats for word in _TYPE_WORDS):
            float_convs.append(conv)
        else:
            opaque.append(conv)
    checked = int8 + len(float_convs) + len(missing)
    if not checked:
        return {"checked": False, "quantized_convs": len(convs), "not_checked": opaque,
                "why": "no quantized convolution shows its own kernel in the engine inspector (inside Myelin or "
                       "DLA regions, or no data type reported); parity only"}
    return {"checked": True, "quantized_convs": len(convs), "int8": int8, "not_int8": float_convs,
            "not_found": missing, "not_checked": opaque,
            "passed": not float_convs and not missing and int8 > 0}


def _dla_entry(manifest: Any) -> Optional[Dict[str, Any]]:
    """The DLA split of a built engine, from its manifest (None for a GPU engine)."""
    if manifest is None or manifest.dla_core is None:
        return None
    return {"core": manifest.dla_core, "dla_layers": manifest.dla_layers,
            "gpu_fallback_layers": manifest.gpu_fallback_layers, "gpu_fallback_names": manifest.gpu_fallback_names}


def _candidates(deploy: Path, work: Path, backend: str,
                dla_core: Optional[int] = None) -> Tuple[List[Tuple[str, Path, str, Any]], Dict[str, str]]:
    """(name, artifact, how it was made, manifest or None) per precision, and the precisions skipped with why;
    builds the engines on TensorRT."""
    fp32, int8 = deploy / FP32_ONNX, deploy / INT8_ONNX
    for path in (fp32, int8):
        if not path.is_file():
            raise InputError(f"{path}: missing (written by `rrl-edge export --int8`)")
    if backend == "onnxruntime":
        if dla_core is not None:
            raise InputError("--dla-core: the DLA is TensorRT's; --backend onnxruntime has none")
        return [("fp32", fp32, "onnxruntime", None), ("int8", int8, "onnxruntime", None)], {}
    from rrl_edge.export.tensorrt_build import EngineRequest, build_engine, tensorrt_status, timing_cache_in
    from rrl_edge.manifest import version_triple

    ok, status = tensorrt_status()
    if not ok:
        raise ExportError(f"cannot build TensorRT engines here: {status}")
    import tensorrt as trt

    work.mkdir(parents=True, exist_ok=True)
    cache = timing_cache_in(work)
    skipped: Dict[str, str] = {}
    wanted = [("fp32", fp32, False), ("fp16", fp32, True), ("int8", int8, False)]
    if dla_core is not None:
        skipped["fp32"] = f"DLA core {dla_core}: the DLA runs FP16 and INT8 only"
    if version_triple(trt.__version__)[0] >= 11:
        skipped["fp16"] = (f"TensorRT {trt.__version__} has no FP16 builder flag (strong typing only) and the "
                           "export writes no FP16 ONNX")
    out = []
    for name, onnx, fp16 in wanted:
        if name in skipped:
            continue
        engine = work / (f"rrl.{name}.dla{dla_core}.plan" if dla_core is not None else f"rrl.{name}.plan")
        manifest = build_engine(EngineRequest(onnx, engine, fp16=fp16, timing_cache=cache, dla_core=dla_core))
        where = f"DLA core {dla_core} of {manifest.gpu_name}" if dla_core is not None else manifest.gpu_name
        out.append((name, engine, f"TensorRT {manifest.tensorrt_version} {manifest.precision} on {where}", manifest))
    return out, skipped


def run_device_check(deploy: Path, report_path: Path, backend: str = "tensorrt", work_dir: Optional[Path] = None,
                     budget: Optional[float] = None, show_progress: bool = True,
                     dla_core: Optional[int] = None) -> Dict[str, Any]:
    """Every check above; returns the report (also written to ``report_path``) with ``passed``."""
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if dla_core is not None and dla_core < 0:
        raise InputError(f"--dla-core {dla_core}: DLA cores are numbered from 0")
    ref, pairs, labels, reference = load_reference(deploy)
    budget = float(ref.get("budget", 0.3)) if budget is None else budget
    categories = ref["categories"]
    by_labels, by_reference = _split(categories, labels), _split(categories, reference)
    report: Dict[str, Any] = {"format": "rrl-edge-device-check", "deploy": str(deploy), "backend": backend,
                              "pairs": int(len(pairs)), "budget": budget, "dla_core": dla_core, "candidates": {}}
    candidates, skipped = _candidates(deploy, work_dir or deploy / "engines", backend, dla_core)
    report["skipped"] = skipped
    passed = True
    for name, artifact, made, manifest in candidates:
        with make_runner(artifact, backend) as runner:
            scores = score_pairs(runner, pairs, 256, show_progress, f"{name} {backend}")
            result = compare(by_labels, by_reference, _split(categories, scores), budget)
            entry: Dict[str, Any] = {"artifact": str(artifact), "made": made, "parity": result,
                                     "bench": _bench(runner, pairs, BENCH_BATCH)}
            dla = _dla_entry(manifest)
            if dla is not None:
                entry["dla"] = dla
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
    title = f"device check ({report['backend']}, {report['pairs']} test pairs, budget {report['budget']} FPR95 points"
    if report.get("dla_core") is not None:
        title += f", DLA core {report['dla_core']}"
    lines = [title + ")",
             f"{'engine':<6} {'mean FPR95':>10} {'ref':>6} {'logit RMS':>9} {'agree %':>8} {'p50 ms@64':>9} "
             f"{'pairs/s':>8} {'INT8 convs':>10} {'DLA/GPU':>8}  verdict"]
    for name, c in report["candidates"].items():
        p, b, k = c["parity"], c["bench"], c.get("int8_kernels", {})
        kern = f"{k['int8']}/{k['quantized_convs']}" if k.get("checked") else "-"
        dla = c.get("dla")
        split = f"{dla['dla_layers']}/{dla['gpu_fallback_layers']}" if dla else "-"
        lines.append(f"{name:<6} {p['mean_fpr95']:>10.2f} {p['mean_fpr95_reference']:>6.2f} {p['logit_rms']:>9.3f} "
                     f"{100 * p['agreement']:>8.2f} {b['p50_ms']:>9.2f} {b['pairs_per_s']:>8.0f} {kern:>10} "
                     f"{split:>8}  {'ok' if c['passed'] else 'FAILED'}")
        if (k and not k.get("checked", True)) or k.get("not_checked"):
            lines.append(f"       INT8 kernels not checked: {k.get('why') or ', '.join(k['not_checked'])}")
        if dla and dla.get("gpu_fallback_names"):
            lines.append(f"       on the GPU, not DLA core {dla['core']}: {', '.join(dla['gpu_fallback_names'])}")
    for name, why in (report.get("skipped") or {}).items():
        lines.append(f"{name:<6} skipped: {why}")
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)
