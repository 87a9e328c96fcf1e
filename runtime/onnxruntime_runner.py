"""ONNX Runtime runner: FP32 and INT8 ONNX models, on the CPU (the default where there is no GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Union

import numpy as np

from rrl_edge.contracts import INPUT_NAMES
from rrl_edge.errors import InputError
from rrl_edge.runtime.runner import Runner

if TYPE_CHECKING:
    import onnxruntime



def cpu_session(model: Union[Path, bytes], threads: Optional[int] = None) -> "onnxruntime.InferenceSession":
    """A CPU session with every graph optimization on (ONNX Runtime's QDQ fusions need them)."""
    return make_session(model, threads, ["CPUExecutionProvider"])


def make_session(model: Union[Path, bytes], threads: Optional[int], providers: List[str]) -> "onnxruntime.InferenceSession":
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: quantized graphs make it chatty
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=providers)


def onnx_precision(model: Union[Path, bytes]) -> str:
    """"int8" for a model with Q/DQ or QLinear nodes, else "fp32" (op types are stored verbatim)."""
    data = model.read_bytes() if isinstance(model, Path) else bytes(model)
    return "int8" if (b"QuantizeLinear" in data or b"QLinear" in data) else "fp32"


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, source: Any, threads: Optional[int] = None, device: str = "cpu") -> None:
        """``source``: an .onnx file, the model's bytes, or an open ``onnxruntime.InferenceSession``."""
        super().__init__(source)
        self.threads = threads
        self.device = device
        self._session: Optional["onnxruntime.InferenceSession"] = None
        self._precision = "fp32"

    @property
    def precision(self) -> str:
        return self._precision

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InputError(f"{self.path}: ONNX models need onnxruntime (pip install onnxruntime)") from exc
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError(f"{self.path}: this onnxruntime has no CUDA provider; use --backend tensorrt or the CPU")
            providers.insert(0, "CUDAExecutionProvider")
        model = self.path if self.from_file else self.source
        try:
            session = model if hasattr(model, "get_inputs") else make_session(model, self.threads, providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise InputError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise InputError(f"{self.path}: model inputs are {names}, expected {list(INPUT_NAMES)} (an rrl-edge export)")
        self._session = session
        self._precision = onnx_precision(model) if not hasattr(model, "get_inputs") else "unknown"

    def _close(self) -> None:
        self._session = None

    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        assert self._session is not None, "open() the runner first"
        out: Any = self._session.run(None, {INPUT_NAMES[0]: vis, INPUT_NAMES[1]: other})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)
