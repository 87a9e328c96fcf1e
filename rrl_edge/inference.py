"""Scoring patch pairs with the PyTorch model: input checks, batching, progress."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from rrl_edge.errors import InputError
from rrl_edge.models.rrlnet import RRLNet
from rrl_edge.runtime.pairs import check_pairs

__all__ = ["check_pairs", "score_pairs", "to_tensor"]


def to_tensor(pairs: np.ndarray) -> torch.Tensor:
    """uint8 patches -> float in [0, 1]; float patches are taken as already scaled."""
    t = torch.from_numpy(np.ascontiguousarray(pairs))
    return t.float().div_(255.0) if pairs.dtype == np.uint8 else t.float()


@torch.no_grad()
def score_pairs(
    model: RRLNet,
    pairs: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    desc: Optional[str] = None,
    source: str = "input",
) -> np.ndarray:
    """Match scores in [0, 1] for (N, 2, 64, 64) patch pairs, [:, 0] VIS."""
    check_pairs(pairs, source)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    model.eval()
    scores = np.empty(len(pairs), dtype=np.float32)
    starts = range(0, len(pairs), batch_size)
    for start in tqdm(starts, desc=desc or "scoring", unit="batch", disable=not progress, leave=False):
        batch = to_tensor(pairs[start : start + batch_size])
        scores[start : start + len(batch)] = model(batch[:, :1], batch[:, 1:]).squeeze(1).numpy()
    return scores
