"""ONNX Runtime runner: FP32 and INT8 ONNX models, on the CPU (the default where there is no GPU)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from rrl_edge.contracts import BATCH_DIM, INPUT_NAMES, INPUT_SHAPE
from rrl_edge.errors import InputError
from rrl_edge.interrupts import raise_if_requested
from rrl_edge.runtime.runner import Runner

if TYPE_CHECKING:
    import onnxruntime



# ONNX Runtime's log levels: 3 = error, 4 = fatal. Its errors come back as exceptions, which the command line turns
# into one line naming the model; at level 3 the same error was also printed first, in colour, by its logger.
QUIET = 4


def cpu_session(model: Union[Path, bytes], threads: Optional[int] = None) -> "onnxruntime.InferenceSession":
    """A CPU session with every graph optimization on (ONNX Runtime's QDQ fusions need them)."""
    return make_session(model, threads, ["CPUExecutionProvider"])


def make_session(model: Union[Path, bytes], threads: Optional[int], providers: List[str]) -> "onnxruntime.InferenceSession":
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort.set_default_logger_severity(QUIET)
    options.log_severity_level = QUIET
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=providers)


def onnx_precision(model: Union[Path, bytes]) -> str:
    """"int8" for a model with Q/DQ or QLinear nodes, else "fp32" (op types are stored verbatim)."""
    data = model.read_bytes() if isinstance(model, Path) else bytes(model)
    return "int8" if (b"QuantizeLinear" in data or b"QLinear" in data) else "fp32"


def check_interface(session: Any, path: Path) -> None:
    """Each input float32 (dynamic batch, 1, 64, 64) and a float output, checked when the model opens, so a model
    with the right names but another shape, dtype or a fixed batch is refused in one line instead of failing
    inside ONNX Runtime at the first batch."""
    for arg in session.get_inputs():
        shape = list(arg.shape or [])
        if arg.type != "tensor(float)":
            raise InputError(f"{path}: input {arg.name!r} is {arg.type}, expected tensor(float) (an rrl-edge export)")
        if len(shape) != len(INPUT_SHAPE) or any(isinstance(d, int) and d != want
                                                    for d, want in zip(shape[1:], INPUT_SHAPE[1:])):
            raise InputError(f"{path}: input {arg.name!r} has shape {shape}, expected "
                             f"[{BATCH_DIM}, {', '.join(str(d) for d in INPUT_SHAPE[1:])}]")
        if isinstance(shape[0], int) and shape[0] > 0:
            raise InputError(f"{path}: input {arg.name!r} has a fixed batch of {shape[0]}; export it with a dynamic "
                             f"batch (rrl-edge export)")
    outputs = session.get_outputs()
    if not outputs or outputs[0].type not in ("tensor(float)", "tensor(float16)"):
        kind = outputs[0].type if outputs else "none"
        raise InputError(f"{path}: output is {kind}, expected one float score per pair")


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
        check_interface(session, self.path)
        self._session = session
        self._precision = onnx_precision(model) if not hasattr(model, "get_inputs") else "unknown"

    def _close(self) -> None:
        self._session = None

    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        assert self._session is not None, "open() the runner first"
        try:
            out: Any = run_interruptible(self._session, {INPUT_NAMES[0]: vis, INPUT_NAMES[1]: other})[0]
        except Exception as exc:  # onnxruntime's own exception types: one line naming the model
            raise InputError(f"{self.path}: ONNX Runtime failed on a batch of {len(vis)} "
                             f"({' '.join(str(exc).split())[:300]})") from None
        return np.asarray(out, dtype=np.float32).reshape(-1)


def run_interruptible(session: Any, feeds: Dict[str, np.ndarray]) -> List[Any]:
    """``session.run`` that Ctrl-C and SIGTERM can stop: Python runs signal handlers only between bytecodes of the
    main thread, so a long run (a model with a Loop, a huge batch) would ignore them until it returned. On the
    main thread the run goes to a worker while this thread waits; the exception the handler raises sets ONNX
    Runtime's terminate flag, which ends the run at its next kernel, and goes on up."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = QUIET
    if threading.current_thread() is not threading.main_thread():
        return session.run(None, feeds, options)
    result: Dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: a join interrupted by the handler's exception can mark the
    # worker stopped while it still runs (CPython 3.11), and the interpreter then exits under a live ORT run

    def work() -> None:
        try:
            result["out"] = session.run(None, feeds, options)
        except BaseException as exc:  # noqa: BLE001  (handed to the waiting thread)
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="onnxruntime-run", daemon=True).start()
    try:
        while not done.wait(0.5):
            raise_if_requested()
    except BaseException:
        options.terminate = True
        done.wait(10)
        raise
    if "error" in result:
        raise result["error"]
    return result["out"]
