"""Batches for training, made on a background thread so the network never waits for augmentation.

The order is a seeded permutation per epoch, sharded by rank for DistributedDataParallel, and can start
at any (epoch, batch) so that a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from rrl_edge.contracts import to_unit_float
from rrl_edge.errors import DataError
from rrl_edge.training.augment import AugmentConfig, augment_batch
from rrl_edge.training.modality import ModalityConfig, randomize_modality


@dataclass
class Batch:
    vis: torch.Tensor  # (B, 1, 64, 64) float in [0, 1]
    other: torch.Tensor
    labels: torch.Tensor  # (B, 1) float 0/1
    epoch: int
    index: int  # batch index within the epoch (per rank)


class PairLoader:
    """Endless iterator of augmented batches; ``batches_per_epoch`` is per rank, the last partial batch dropped."""

    def __init__(
        self,
        patches: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: Optional[AugmentConfig] = AugmentConfig(),
        modality: Optional[ModalityConfig] = None,
        prefetch: int = 6,
        source: str = "the training set",
    ) -> None:
        self.patches, self.labels = patches, labels
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.augment = augment
        self.modality = modality if modality is not None and modality.families else None
        self.prefetch = prefetch
        self.batches_per_epoch = (len(patches) // world_size) // batch_size
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{source}: {len(patches)} training pairs are too few for batch size {batch_size} on {world_size} process(es)"
            )

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.patches))
        return order[self.rank :: self.world_size]

    def _make(self, epoch: int, index: int, order: np.ndarray) -> Batch:
        idx = np.sort(order[index * self.batch_size : (index + 1) * self.batch_size])
        x = torch.from_numpy(to_unit_float(self.patches[idx]))
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, epoch, index)) & 0x7FFFFFFF)
        if self.augment is not None:
            x = augment_batch(x, g, self.augment)
        if self.modality is not None:
            x = randomize_modality(x, g, self.modality)
        y = torch.from_numpy(self.labels[idx].astype(np.float32)).unsqueeze(1)
        return Batch(x[:, :1].contiguous(), x[:, 1:].contiguous(), y, epoch, index)

    def _positions(self, start: Tuple[int, int]) -> Iterator[Tuple[int, int, np.ndarray]]:
        epoch, index = start
        while True:
            order = self._epoch_order(epoch)
            for i in range(index, self.batches_per_epoch):
                yield epoch, i, order
            epoch, index = epoch + 1, 0

    def iterate(self, start: Tuple[int, int] = (0, 0)) -> Iterator[Batch]:
        """Batches from (epoch, batch index) on, produced by a daemon thread."""
        out: "queue.Queue[object]" = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for epoch, index, order in self._positions(start):
                    if stop.is_set():
                        return
                    put(self._make(epoch, index, order))
            except BaseException as exc:  # hand the failure to the training thread instead of hanging it
                put(exc)

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        thread = threading.Thread(target=work, name="rrl-edge-loader", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            # Join, not just signal: a daemon thread still inside torch when the interpreter exits aborts the
            # process ("terminate called without an active exception"), which is how a DDP rank died in CI.
            stop.set()
            thread.join(timeout=60)
