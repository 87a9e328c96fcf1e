"""Scoring patch pairs with the PyTorch model: input checks, batching, progress."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from rrl_edge.errors import InputError
from rrl_edge.models.rrlnet import PATCH_SIZE, RRLNet


def check_pairs(pairs: np.ndarray, source: str = "input") -> None:
    """(N, 2, 64, 64) uint8 in [0, 255], or float in [0, 1] with no NaN; N > 0."""
    if not isinstance(pairs, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of patch pairs, got {type(pairs).__name__}")
    if pairs.ndim != 4 or pairs.shape[1:] != (2, PATCH_SIZE, PATCH_SIZE):
        raise InputError(f"{source}: patch pairs must have shape (N, 2, {PATCH_SIZE}, {PATCH_SIZE}), got {pairs.shape}")
    if pairs.shape[0] == 0:
        raise InputError(f"{source}: no patch pairs (N = 0)")
    if pairs.dtype == np.uint8:
        return
    if not np.issubdtype(pairs.dtype, np.floating):
        raise InputError(f"{source}: patch pairs must be uint8 or float, got {pairs.dtype}")
    if not np.isfinite(pairs).all():
        bad = int((~np.isfinite(pairs)).any(axis=(1, 2, 3)).sum())
        raise InputError(f"{source}: {bad} patch pair(s) contain NaN or infinity")


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
