"""onnxsim on the exported graph (onnxslim only when onnxsim fails), checked on real patch pairs.

Simplification folds the shape arithmetic of the attention gates into constants, which is what lets
TensorRT and ONNX Runtime's quantizer see a plain graph. It must never add nodes nor change a score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict

import numpy as np

from rrl_edge.errors import ExportError
from rrl_edge.atomic import atomic_write_bytes
from rrl_edge.export.onnx_export import check_io
from rrl_edge.runtime.registry import score_with

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

TOLERANCE = 1e-6  # max |score difference| simplification may introduce (float reassociation only)


def _onnxsim(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    import onnxsim

    simplified, ok = onnxsim.simplify(proto, check_n=0)  # checked below on real pairs instead of random input
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    # onnxsim 0.8 records every removed node in metadata_props; keep the model file about the model
    kept = [(p.key, p.value) for p in simplified.metadata_props if not p.key.startswith("onnxsim.")]
    del simplified.metadata_props[:]
    for key, value in kept:
        simplified.metadata_props.add(key=key, value=value)
    return simplified


def _onnxslim(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    import onnxslim

    return onnxslim.slim(proto)


def simplify_onnx(proto: "onnx.ModelProto", out_path: Path, pairs: np.ndarray) -> Dict[str, Any]:
    """Write the simplified graph to ``out_path``; return the tool used, node counts and the score difference."""
    try:
        simplified, tool = _onnxsim(proto), "onnxsim"
    except Exception as exc:  # onnxsim fails in C++ on graphs it cannot fold; the fallback is a separate project
        log.warning("onnxsim failed (%s: %s); simplifying with onnxslim instead", type(exc).__name__, exc)
        try:
            simplified, tool = _onnxslim(proto), "onnxslim"
        except Exception as exc2:
            raise ExportError(f"neither onnxsim nor onnxslim could simplify the exported graph: {exc2}") from exc2
    before, after = len(proto.graph.node), len(simplified.graph.node)
    if after > before:
        raise ExportError(f"{tool} grew the graph from {before} to {after} nodes")
    check_io(simplified)
    reference = score_with(proto.SerializeToString(), pairs)
    result = score_with(simplified.SerializeToString(), pairs)
    diff = float(np.max(np.abs(reference - result)))
    if diff > TOLERANCE:
        raise ExportError(f"{tool} changed scores by up to {diff:.3g} on {len(pairs)} real pairs (allowed {TOLERANCE})")
    atomic_write_bytes(out_path, simplified.SerializeToString())
    return {"tool": tool, "nodes_before": before, "nodes_after": after, "max_abs_diff": diff, "pairs": int(len(pairs))}
