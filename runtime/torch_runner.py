"""PyTorch runner: a checkpoint run eagerly, the reference every exported artifact is compared with.

On the CPU by default; ``device="cuda"`` (``rrl-edge run --backend torch --device cuda``) runs it on a
desktop GPU without TensorRT. ``RRL_EDGE_TORCH_DEVICE`` sets the default device where a command has no
``--device`` (`rrl-edge parity` / `bench` of a checkpoint in scripts/gpu_parity.sh). A CUDA device on a
torch without CUDA (this project's CPU build, or no GPU) is refused in one line when the runner opens.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from rrl_edge.errors import InputError
from rrl_edge.runtime.runner import Runner

DEVICE_ENV = "RRL_EDGE_TORCH_DEVICE"


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, source: Any, threads: Optional[int] = None, device: Optional[str] = None,
                 polarity: Optional[str] = None) -> None:
        """``source``: a checkpoint file, or an RRLNet module in memory (scored in eval mode).
        ``device``: "cpu", "cuda" or "cuda:N" (default: $RRL_EDGE_TORCH_DEVICE, else "cpu").
        ``polarity``: rrl_edge.models.POLARITIES, replacing the model's own (None keeps it)."""
        super().__init__(source)
        self.threads = threads
        self.polarity = polarity
        self.device = str(device or os.environ.get(DEVICE_ENV) or "cpu").strip().lower()
        if self.device.isdigit():
            self.device = f"cuda:{self.device}"
        if self.device != "cpu" and not (self.device == "cuda" or self.device.startswith("cuda:")):
            raise InputError(f"{self.path}: --device {self.device!r}: PyTorch runs on cpu, cuda or cuda:N")
        self._model: Any = None
        self._torch_device: Any = None

    def _open(self) -> None:
        import torch

        from rrl_edge.checkpoint import load_model

        check_torch_device(self.device, self.path)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.from_file:
            self._model, _ = load_model(self.path, self.polarity)  # raises CheckpointError naming the file
        elif self.polarity is not None:
            from rrl_edge.models import with_polarity

            self._model = with_polarity(self.source, self.polarity)
        else:
            self._model = self.source
        self._torch_device = torch.device(self.device)
        self._model = self._model.to(self._torch_device).eval()

    def _close(self) -> None:
        self._model = None

    def describe(self) -> Dict[str, str]:
        info = super().describe()
        info["device"] = self.device
        if self.polarity is not None:
            info["polarity"] = self.polarity
        return info

    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        import torch

        assert self._model is not None, "open() the runner first"
        with torch.no_grad():
            out = self._model(torch.from_numpy(vis).to(self._torch_device), torch.from_numpy(other).to(self._torch_device))
        return out.reshape(-1).cpu().numpy().astype(np.float32, copy=False)


def check_torch_device(device: str, subject: str) -> None:
    """Refuse, in one line naming ``subject``, a CUDA device this PyTorch cannot use (a CPU-only build, no GPU
    visible, an index past the last GPU); the runner and the trainer share it."""
    import torch

    if device == "cpu":
        return
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
        raise InputError(f"{subject}: --device {device}: this PyTorch {torch.__version__} has no CUDA "
                         f"({build}); use --device cpu, or install a CUDA build of torch")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise InputError(f"{subject}: --device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
