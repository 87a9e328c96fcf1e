"""Scoring patch pairs with an ONNX model in ONNX Runtime (CPU): the same batching and scaling as PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from tqdm import tqdm

from rrl_edge.contracts import INPUT_NAMES
from rrl_edge.runtime.onnxruntime_runner import cpu_session
from rrl_edge.runtime.pairs import check_pairs

__all__ = ["cpu_session", "score_onnx"]

if TYPE_CHECKING:
    import onnxruntime


def score_onnx(
    session: "onnxruntime.InferenceSession",
    pairs: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    desc: Optional[str] = None,
) -> np.ndarray:
    """Scores in [0, 1] for (N, 2, 64, 64) pairs ([:, 0] VIS); uint8 is scaled by 1/255 like ``to_tensor``."""
    check_pairs(pairs)
    scores = np.empty(len(pairs), dtype=np.float32)
    for start in tqdm(range(0, len(pairs), batch_size), desc=desc or "onnxruntime", unit="batch",
                      disable=not progress, leave=False):
        batch = pairs[start : start + batch_size]
        x = batch.astype(np.float32) / np.float32(255.0) if batch.dtype == np.uint8 else batch.astype(np.float32)
        feed = {INPUT_NAMES[0]: np.ascontiguousarray(x[:, :1]), INPUT_NAMES[1]: np.ascontiguousarray(x[:, 1:])}
        scores[start : start + len(batch)] = session.run(None, feed)[0].reshape(-1)
    return scores
