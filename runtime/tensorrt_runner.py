"""TensorRT runner: a serialized engine (``rrl.plan``) on a Jetson or a desktop GPU, with numpy, tensorrt, pycuda.

No torch: this is the runner of the device. It works with TensorRT 8.5 / 8.6 (JetPack 5: binding indices,
``execute_async_v2``) and 10.x (JetPack 6, desktops: named tensors, ``execute_async_v3``), and keeps to
Python 3.8 syntax (JetPack 5 ships Python 3.8).

Before TensorRT sees the engine, its manifest (``rrl.plan.json``, written by ``rrl-edge build``) is checked:
the file's size and sha256, the input/output names and shapes, then the TensorRT version and the GPU's
compute capability (rrl_edge.runtime.engine_manifest). TensorRT itself refuses what is left (a file that
is not an engine). Inference uses page-locked host buffers and one CUDA stream; two buffer sets let batch
k+1 be copied in and computed while the host waits for batch k's scores and prepares batch k+2.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from rrl_edge.errors import InputError, RRLEdgeError
from rrl_edge.contracts import INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE
from rrl_edge.runtime import engine_manifest
from rrl_edge.runtime.engine_manifest import Environment
from rrl_edge.runtime.runner import Batch, Runner

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

INSTALL_HINT = ("the TensorRT runner needs tensorrt and pycuda (JetPack ships them: apt install python3-libnvinfer; "
                "on a desktop: pip install tensorrt pycuda, or pip install 'rrl-edge[tensorrt]')")
SAMPLE_SHAPE = (1, PATCH_SIZE, PATCH_SIZE)
Chunk = Tuple[int, bool, np.ndarray, np.ndarray]  # (batch number, last chunk of that batch?, vis, other)


def require_tensorrt() -> str:
    """The installed TensorRT version, or an InputError saying what is missing (tensorrt, pycuda, or both)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise InputError(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    if not hasattr(trt, "Runtime"):  # tensorrt-stubs alone installs an importable, empty `tensorrt`
        raise InputError(f"only the TensorRT type stubs (tensorrt-stubs) are installed, not TensorRT: {INSTALL_HINT}")
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        raise InputError(f"pycuda is not installed: {INSTALL_HINT}") from exc
    return str(trt.__version__)


def _major(version: str) -> int:
    return engine_manifest.version_triple(version)[0]


class _NamedTensors:
    """TensorRT 10.x I/O: tensors by name (num_io_tensors, get_tensor_name, get_tensor_mode, set_input_shape,
    set_tensor_address, execute_async_v3 -- all present since 8.5, the only API from 10.0 on)."""

    def __init__(self, engine: "trt.ICudaEngine", context: "trt.IExecutionContext") -> None:
        import tensorrt as trt

        self.engine, self.context = engine, context
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]

    def shape(self, name: str) -> Tuple[int, ...]:
        dims = self.engine.get_tensor_shape(name)
        return tuple(dims[i] for i in range(len(dims)))  # Dims indexes like a tuple

    def dtype(self, name: str) -> np.dtype:
        import tensorrt as trt

        return np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))

    def max_batch(self) -> int:
        return int(self.engine.get_tensor_profile_shape(INPUT_NAMES[0], 0)[2][0])  # (min, opt, max) of profile 0

    def enqueue(self, batch: int, addresses: Dict[str, int], stream_handle: int) -> bool:
        for name in self.inputs:
            if not self.context.set_input_shape(name, (batch,) + SAMPLE_SHAPE):
                return False
        for name, address in addresses.items():
            self.context.set_tensor_address(name, address)
        return bool(self.context.execute_async_v3(stream_handle))


class _Bindings:
    """TensorRT 8.5 / 8.6 I/O (JetPack 5): binding indices (num_bindings, get_binding_name, binding_is_input,
    get_profile_shape, set_binding_shape, execute_async_v2). These calls were removed in TensorRT 10, so the
    10.x stubs mypy checks against do not know them: engine and context are untyped here."""

    def __init__(self, engine: Any, context: Any) -> None:
        self.engine, self.context = engine, context
        self.names = [str(engine.get_binding_name(i)) for i in range(engine.num_bindings)]
        self.inputs = [n for i, n in enumerate(self.names) if engine.binding_is_input(i)]
        self.addresses = [0] * len(self.names)  # execute_async_v2 takes one device pointer per binding index

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self.engine.get_binding_shape(self.names.index(name)))

    def dtype(self, name: str) -> np.dtype:
        import tensorrt as trt

        return np.dtype(trt.nptype(self.engine.get_binding_dtype(self.names.index(name))))

    def max_batch(self) -> int:
        return int(self.engine.get_profile_shape(0, INPUT_NAMES[0])[2][0])  # (profile index, binding) -> min/opt/max

    def enqueue(self, batch: int, addresses: Dict[str, int], stream_handle: int) -> bool:
        for name in self.inputs:
            if not self.context.set_binding_shape(self.names.index(name), (batch,) + SAMPLE_SHAPE):
                return False
        for name, address in addresses.items():
            self.addresses[self.names.index(name)] = address
        return bool(self.context.execute_async_v2(bindings=self.addresses, stream_handle=stream_handle))


class _Slot:
    """One buffer set: page-locked host and device arrays for max_batch pairs, and the event of its last copy."""

    def __init__(self, cuda: Any, max_batch: int, out_dtype: np.dtype, out_size: int) -> None:
        self.host: Dict[str, np.ndarray] = {
            name: cuda.pagelocked_empty((max_batch,) + SAMPLE_SHAPE, np.float32) for name in INPUT_NAMES
        }
        self.host[OUTPUT_NAME] = cuda.pagelocked_empty((max_batch, out_size), out_dtype)
        self.device: Dict[str, Any] = {name: cuda.mem_alloc(array.nbytes) for name, array in self.host.items()}
        self.event = cuda.Event()

    def free(self) -> None:
        for allocation in self.device.values():
            allocation.free()
        for array in self.host.values():
            free = getattr(array.base, "free", None)  # pycuda's HostAllocation behind pagelocked_empty
            if free is not None:
                free()
        self.device, self.host = {}, {}


def _capturing_logger(errors: List[str]) -> "trt.ILogger":
    """A TensorRT logger that forwards to ``logging`` and keeps the errors, so they can go into our message."""
    import tensorrt as trt

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: "trt.ILogger.Severity", msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                errors.append(msg)
                log.debug("TensorRT: %s", msg)
            elif int(severity) == int(trt.ILogger.Severity.WARNING):
                log.warning("TensorRT: %s", msg)

    return Logger()


class TensorRTRunner(Runner):
    """Runs an engine built by ``rrl-edge build`` on GPU ``device``; checks its manifest first (check_manifest)."""

    backend = "tensorrt"

    def __init__(self, path: Union[str, Path], device: int = 0, check_manifest: bool = True) -> None:
        super().__init__(path)
        self.device = int(device)
        self.check_manifest = check_manifest
        self.manifest: Optional[Dict[str, Any]] = None
        self.environment: Optional[Environment] = None
        self._max_batch: Optional[int] = None
        self._cuda_context: Any = None
        self._errors: List[str] = []
        self._trt: Dict[str, Any] = {}  # logger, runtime, engine, context: kept alive together, freed in order
        self._io: Any = None  # _NamedTensors or _Bindings
        self._stream: Any = None
        self._slots: List[_Slot] = []

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "?")) if self.manifest else "?"

    @property
    def max_batch(self) -> Optional[int]:
        """The profile maximum: the engine's own once open, before that the manifest's (so callers that size
        batches before opening, like score_pairs, already cut them right; larger batches are split anyway)."""
        if self._max_batch is not None:
            return self._max_batch
        if self.manifest is None:
            try:
                return engine_manifest.profile_max_batch(engine_manifest.read_manifest(self.path))
            except InputError:
                return None  # open() says what is wrong with the manifest
        return engine_manifest.profile_max_batch(self.manifest)

    def describe(self) -> Dict[str, str]:
        info = super().describe()
        if self.environment is not None:
            info.update(tensorrt=self.environment.tensorrt_version, device=f"{self.device}: {self.environment.gpu_name}",
                        compute_capability=self.environment.compute_capability)
        return info

    # ---- open: every check that needs no TensorRT first, then TensorRT's own ----

    def _read_engine(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read the engine ({exc.strerror})") from exc
        if not data:
            raise InputError(f"{self.path}: the engine file is empty; {engine_manifest.rebuild_hint(self.path, self.manifest)}")
        return data

    def _open(self) -> None:
        data = self._read_engine()
        manifest = None
        if self.check_manifest:
            manifest = engine_manifest.read_manifest(self.path)
            engine_manifest.check_engine_bytes(self.path, data, manifest)
            engine_manifest.check_interface(self.path, manifest)
        version = require_tensorrt()
        env = self._select_device(version)
        if manifest is not None:
            for warning in engine_manifest.check_environment(self.path, manifest, env):
                log.warning(warning)
        self.manifest, self.environment = manifest, env
        import pycuda.driver as cuda

        self._cuda_context = cuda.Device(self.device).retain_primary_context()  # see _select_device
        try:
            with self._active():
                self._load(data, version)
        except BaseException:
            self._release()
            raise

    def _select_device(self, version: str) -> Environment:
        """Describe GPU ``device`` (whose primary context _open then retains).

        Why the primary context and not ``pycuda.autoinit``: autoinit always takes GPU 0 and creates a context
        of its own, while the CUDA runtime that TensorRT (and ONNX Runtime, torch) use works in the device's
        primary context. Retaining it picks the GPU by index, shares one context with TensorRT and any other
        CUDA library in the process (a Jetson has little memory to spare for a second one), and pushing it only
        around our own calls leaves the thread's context stack as we found it.
        """
        import pycuda.driver as cuda

        try:
            cuda.init()
            count = cuda.Device.count()
        except cuda.Error as exc:
            raise InputError(f"{self.path}: no usable CUDA driver or GPU ({exc})") from exc
        if count == 0:
            raise InputError(f"{self.path}: TensorRT is installed but no CUDA GPU was found")
        if not 0 <= self.device < count:
            raise InputError(f"{self.path}: --device {self.device}: this machine has {count} GPU(s), 0..{count - 1}")
        gpu = cuda.Device(self.device)
        major, minor = gpu.compute_capability()
        return Environment(version, f"{major}.{minor}", str(gpu.name()))

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        """Make our GPU's context current for the calls inside, and restore the thread's previous one after."""
        import pycuda.driver as cuda

        self._cuda_context.push()
        try:
            yield
        finally:
            cuda.Context.pop()

    def _load(self, data: bytes, version: str) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._errors = []
        logger = _capturing_logger(self._errors)
        runtime = trt.Runtime(logger)
        self._trt.update(logger=logger, runtime=runtime)
        try:
            engine = runtime.deserialize_cuda_engine(data)
        except Exception as exc:  # TensorRT usually returns None and logs; some builds raise
            self._errors.append(str(exc))
            engine = None
        if engine is None:
            said = f": {self._errors[-1]}" if self._errors else ""
            raise InputError(f"{self.path}: TensorRT {version} cannot load it: not a TensorRT engine, or built by "
                             f"another TensorRT version or for another GPU (TensorRT says{said or ' nothing'}); "
                             f"{engine_manifest.rebuild_hint(self.path, self.manifest)}")
        self._trt["engine"] = engine
        context = engine.create_execution_context()
        if context is None:
            raise InputError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._trt["context"] = context
        self._io = _NamedTensors(engine, context) if _major(version) >= 10 else _Bindings(engine, context)
        out_dtype, out_size = self._check_io()
        self._max_batch = self._io.max_batch()
        self._stream = cuda.Stream()
        self._slots = [_Slot(cuda, self._max_batch, out_dtype, out_size) for _ in range(2)]

    def _check_io(self) -> Tuple[np.dtype, int]:
        """The engine's own tensors match the runner (also when the manifest is not checked)."""
        io = self._io
        expected = sorted(INPUT_NAMES + (OUTPUT_NAME,))
        if sorted(io.names) != expected or sorted(io.inputs) != sorted(INPUT_NAMES):
            raise InputError(f"{self.path}: the engine's tensors are {io.names} (inputs {io.inputs}), the runner "
                             f"expects inputs {list(INPUT_NAMES)} and output {OUTPUT_NAME!r}; "
                             f"{engine_manifest.rebuild_hint(self.path, self.manifest)}")
        for name in INPUT_NAMES:
            shape, dtype = io.shape(name), io.dtype(name)
            if shape != (-1,) + SAMPLE_SHAPE or dtype != np.float32:
                raise InputError(f"{self.path}: input {name!r} is {dtype} {shape}, the runner feeds float32 "
                                 f"{(-1,) + SAMPLE_SHAPE}; {engine_manifest.rebuild_hint(self.path, self.manifest)}")
        out_shape = io.shape(OUTPUT_NAME)
        out_size = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        if out_size != 1:
            raise InputError(f"{self.path}: output {OUTPUT_NAME!r} has shape {out_shape}, expected one score per pair")
        return io.dtype(OUTPUT_NAME), out_size

    # ---- inference ----

    def infer(self, vis: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Scores of one batch (split into profile-sized chunks if larger than max_batch)."""
        return next(self.infer_batches([(vis, other)]))

    def infer_batches(self, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
        """Scores of each batch in order, with copies and compute of the next chunk queued before waiting."""
        if not self.is_open:
            raise RRLEdgeError(f"{self.path}: open() the TensorRT runner first")
        parts: List[np.ndarray] = []
        for last, scores in self._pipeline(self._chunks(batches)):
            parts.append(scores)
            if last:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
                parts = []

    def _chunks(self, batches: Iterable[Batch]) -> Iterator[Chunk]:
        """Each batch checked, then cut into pieces of at most max_batch pairs (the last may be shorter)."""
        step = self._max_batch or 1
        for number, (vis, other) in enumerate(batches):
            for name, array in ((INPUT_NAMES[0], vis), (INPUT_NAMES[1], other)):
                if (not isinstance(array, np.ndarray) or array.ndim != 4 or array.shape[1:] != SAMPLE_SHAPE
                        or not np.issubdtype(array.dtype, np.floating)):
                    got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
                    raise InputError(f"{self.path}: input {name!r} must be float (B, 1, {PATCH_SIZE}, {PATCH_SIZE}), got {got}")
            if len(vis) != len(other) or len(vis) == 0:
                raise InputError(f"{self.path}: batch {number} has {len(vis)} VIS and {len(other)} other-spectrum patches")
            for start in range(0, len(vis), step):
                yield number, start + step >= len(vis), vis[start : start + step], other[start : start + step]

    def _pipeline(self, chunks: Iterator[Chunk]) -> Iterator[Tuple[bool, np.ndarray]]:
        """Double buffering on one stream: chunk k+1 is enqueued (copy in, compute, copy out) before the host
        waits for chunk k's scores; while the GPU works on k+1 the host fetches and stages chunk k+2 into the
        buffer set chunk k has just released."""
        pending: Deque[Tuple[_Slot, int, bool]] = deque()
        try:
            for k, (_, last, vis, other) in enumerate(chunks):
                slot = self._slots[k % 2]
                with self._active():
                    self._enqueue(slot, vis, other)
                    pending.append((slot, len(vis), last))
                    ready = self._collect(*pending.popleft()) if len(pending) == 2 else None
                if ready is not None:
                    yield ready
            while pending:
                with self._active():
                    ready = self._collect(*pending.popleft())
                yield ready
        finally:
            if pending and self._stream is not None and self._cuda_context is not None:  # abandoned mid-way
                with self._active():
                    self._stream.synchronize()

    def _enqueue(self, slot: _Slot, vis: np.ndarray, other: np.ndarray) -> None:
        import pycuda.driver as cuda

        n = len(vis)
        for name, array in ((INPUT_NAMES[0], vis), (INPUT_NAMES[1], other)):
            staged = slot.host[name][:n]
            np.copyto(staged, array, casting="same_kind")  # into page-locked memory: the async copy needs it
            cuda.memcpy_htod_async(slot.device[name], staged, self._stream)
        addresses = {name: int(allocation) for name, allocation in slot.device.items()}
        if not self._io.enqueue(n, addresses, self._stream.handle):
            said = f": {self._errors[-1]}" if self._errors else ""
            raise RRLEdgeError(f"{self.path}: TensorRT could not run a batch of {n}{said}")
        cuda.memcpy_dtoh_async(slot.host[OUTPUT_NAME][:n], slot.device[OUTPUT_NAME], self._stream)
        slot.event.record(self._stream)

    def _collect(self, slot: _Slot, n: int, last: bool) -> Tuple[bool, np.ndarray]:
        slot.event.synchronize()
        return last, slot.host[OUTPUT_NAME][:n, 0].astype(np.float32)  # a copy: the buffer is reused

    # ---- close ----

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free device and page-locked memory, then the TensorRT objects (context before engine), then our
        reference to the GPU's primary context."""
        if self._cuda_context is None:
            return
        try:
            with self._active():
                if self._stream is not None:
                    self._stream.synchronize()
                for slot in self._slots:
                    slot.free()
                self._slots, self._io, self._stream = [], None, None
                for key in ("context", "engine", "runtime", "logger"):
                    self._trt.pop(key, None)
        finally:
            self._cuda_context.detach()
            self._cuda_context = None
            self._max_batch = None
