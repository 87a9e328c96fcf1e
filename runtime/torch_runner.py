"""PyTorch runner: a checkpoint run eagerly, the reference every exported artifact is compared with."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from rrl_edge.runtime.runner import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, source: Any, threads: Optional[int] = None) -> None:
        """``source``: a checkpoint file, or an RRLNet module in memory (scored in eval mode)."""
        super().__init__(source)
        self.threads = threads
        self._model: Any = None

    def _open(self) -> None:
        import torch

        from rrl_edge.checkpoint import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        if self.from_file:
            self._model, _ = load_model(self.path)  # raises CheckpointError naming the file
        else:
            self._model = self.source
        self._model.eval()

    def _close(self) -> None:
        self._model = None

    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        import torch

        assert self._model is not None, "open() the runner first"
        with torch.no_grad():
            out = self._model(torch.from_numpy(vis), torch.from_numpy(other))
        return out.reshape(-1).numpy().astype(np.float32, copy=False)
