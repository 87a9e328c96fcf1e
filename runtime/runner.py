"""The one interface every backend implements (Polygraphy-style runners): open, infer a batch, close.

A backend is one file with one ``Runner`` subclass; ``score_pairs`` does the checking, scaling, batching
and progress for all of them, so a runner only turns float32 (B, 1, 64, 64) VIS / other-spectrum arrays
into B match scores. numpy only: torch, onnxruntime and TensorRT load inside the runners that need them.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from rrl_edge.errors import InputError, RRLEdgeError
from rrl_edge.interrupts import raise_if_requested
from rrl_edge.contracts import check_pairs, split_pair_batch
from rrl_edge.runtime.progress import progress

Batch = Tuple[np.ndarray, np.ndarray]  # float32 (B, 1, 64, 64) VIS, float32 (B, 1, 64, 64) other spectrum


class Runner(abc.ABC):
    """Runs one artifact (engine, ONNX model or checkpoint). Use as a context manager or open()/close()."""

    backend = "?"  # "tensorrt", "onnxruntime", "torch": what `--backend` calls it

    def __init__(self, source: Any) -> None:
        """``source``: a file, or an in-memory model the backend takes (ONNX bytes or session, torch module).
        ``path`` names it in messages: the file, or ``<TypeName>`` for an object."""
        self.source = source
        self.from_file = isinstance(source, (str, os.PathLike))
        self.path = Path(source) if self.from_file else Path(f"<in-memory {type(source).__name__}>")
        self.is_open = False

    @property
    def precision(self) -> str:
        """"fp32", "fp16", "int8", ...: what the artifact computes in (known once open)."""
        return "fp32"

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch ``infer`` accepts (an engine's profile maximum); None = any."""
        return None

    def open(self) -> "Runner":
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def close(self) -> None:
        if self.is_open:
            self._close()
            self.is_open = False

    def __enter__(self) -> "Runner":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abc.abstractmethod
    def _open(self) -> None:
        """Load the artifact; raise InputError naming the file when it cannot be used."""

    def _close(self) -> None:
        """Free what _open took (sessions, engines, device memory)."""

    @abc.abstractmethod
    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Scores (B,) float32 for one batch of float32 (B, 1, 64, 64) inputs, B <= max_batch."""

    def infer_batches(self, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
        """Scores of each batch in order. Backends that can overlap copies and compute override this."""
        for vis, other in batches:
            yield self.infer(vis, other)

    def describe(self) -> Dict[str, str]:
        return {"artifact": str(self.path), "backend": self.backend, "precision": self.precision}


def batch_size_for(runner: Runner, batch_size: int) -> int:
    """The batch actually used: the asked one, capped at what the runner accepts."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    return min(batch_size, runner.max_batch) if runner.max_batch else batch_size


def score_pairs(
    runner: Runner,
    pairs: np.ndarray,
    batch_size: int = 256,
    show_progress: bool = False,
    desc: Optional[str] = None,
    source: str = "input",
) -> np.ndarray:
    """Match scores in [0, 1] for (N, 2, 64, 64) pairs ([:, 0] VIS), split into batches the runner accepts."""
    check_pairs(pairs, source)
    step = batch_size_for(runner, batch_size)
    if not runner.is_open:
        runner.open()
    starts = range(0, len(pairs), step)
    batches = (split_pair_batch(pairs[s : s + step]) for s in progress(starts, desc or runner.backend, show_progress))
    scores = np.empty(len(pairs), dtype=np.float32)
    for start, out in zip(starts, runner.infer_batches(batches)):
        raise_if_requested()  # once per batch, for every backend (each infer_batches is consumed only here)
        n = min(step, len(pairs) - start)
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if out.shape[0] != n:
            raise RRLEdgeError(f"{runner.path}: the {runner.backend} runner returned {out.shape[0]} scores for {n} pairs")
        scores[start : start + n] = out
    if not np.isfinite(scores).all():
        raise RRLEdgeError(f"{runner.path}: the {runner.backend} runner produced NaN or infinite scores")
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    if low < -SCORE_SLACK or high > 1 + SCORE_SLACK:  # written as scores and compared at 0.5, they would mislead
        raise RRLEdgeError(f"{runner.path}: outputs range from {low:.4g} to {high:.4g}, not match probabilities in "
                           "[0, 1]; is its last layer a logit without the sigmoid? (rrl-edge export ends in one)")
    return scores


SCORE_SLACK = 1e-3  # FP16 and INT8 engines may round a sigmoid a hair past 0 or 1
