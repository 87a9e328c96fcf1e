"""TensorRT runner: a serialized engine (``rrl.plan``) on a Jetson or a desktop GPU, with numpy, tensorrt, pycuda.

No torch: this is the runner of the device. One code path for TensorRT 8.5, 8.6 (JetPack 5), 10.x (JetPack 6,
desktops) and 11.x: named tensors and ``execute_async_v3``, which 8.5 introduced. The accepted range is
rrl_edge.manifest.SUPPORTED_TENSORRT. Python 3.8 syntax (JetPack 5 ships Python 3.8).

Before TensorRT sees the engine, its manifest (``rrl.plan.json``, rrl_edge.manifest) is checked: the file's
size on disk (before a byte is read), then its sha256, the input/output names and shapes, the TensorRT
version and the GPU's compute capability. TensorRT itself refuses what is left. An engine built elsewhere
(trtexec) has no manifest: ``check_manifest=False`` (`rrl-edge run --no-manifest`) skips those checks, and the
engine's own tensors (names, shapes, dtypes) and batch profile are still read from TensorRT once it loads.
Inference uses page-locked host buffers and one CUDA stream; two buffer sets let chunk k+1 be copied in and
computed while the host waits for chunk k's scores. Waits are on events made with BLOCKING_SYNC, so a Jetson
core sleeps instead of spinning while the GPU works. A chunk smaller than the profile's minimum is padded up
to it. A DLA engine runs like any other, its TensorRT runtime set to the DLA core its manifest records.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from rrl_edge.errors import InputError, RRLEdgeError
from rrl_edge.contracts import INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE
from rrl_edge.manifest import (
    SUPPORTED_TENSORRT, TENSORRT_INSTALL_HINT, EngineManifest, Environment, hidden_tensorrt_message, rebuild_hint,
    supported_range, supported_text, system_tensorrt, version_triple,
)
from rrl_edge.runtime.runner import Batch, Runner

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

INSTALL_HINT = TENSORRT_INSTALL_HINT
SAMPLE_SHAPE = (1, PATCH_SIZE, PATCH_SIZE)
Chunk = Tuple[bool, int, np.ndarray, np.ndarray]  # (last chunk of its batch?, pairs kept, vis, other)
SUPPORTED = supported_range()  # ((8, 5), (12, 0)): [low, high) of (major, minor), from SUPPORTED_TENSORRT


def require_tensorrt() -> str:
    """The installed TensorRT version, or an InputError saying what is missing (tensorrt, pycuda, or both)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        system = system_tensorrt()  # JetPack's, from apt
        if system:
            raise InputError(hidden_tensorrt_message(system, sys.executable)) from exc
        raise InputError(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    if not hasattr(trt, "Runtime"):  # tensorrt-stubs alone installs an importable, empty `tensorrt`
        raise InputError(f"only the TensorRT type stubs (tensorrt-stubs) are installed, not TensorRT: {INSTALL_HINT}")
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        raise InputError(f"pycuda is not installed: {INSTALL_HINT}") from exc
    version = str(trt.__version__)
    check_tensorrt_version(version)
    return version


def check_tensorrt_version(version: str) -> None:
    """Refuse TensorRT outside SUPPORTED_TENSORRT in one line (below 8.5: no named-tensor I/O; 12 and later:
    an API nobody has checked this code against)."""
    triple = version_triple(version)[:2]
    if not SUPPORTED[0] <= triple < SUPPORTED[1]:
        raise InputError(f"TensorRT {version} is not supported: rrl-edge runs TensorRT {supported_text()} "
                         f"(tensorrt{SUPPORTED_TENSORRT}); {INSTALL_HINT}")


# TensorRT DataType -> numpy, by the enum member's name. Not trt.nptype: TensorRT 8.5's table maps BOOL to
# np.bool, which numpy 1.24 (JetPack 5's pip numpy) removed, so opening any engine failed there
# (NVIDIA/TensorRT#2557, #2701). UINT8 exists from 8.6, INT64 from 10.0; names absent on a version are unused.
NUMPY_DTYPES: Dict[str, Any] = {
    "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
    "UINT8": np.uint8, "INT64": np.int64,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype of a ``tensorrt.DataType`` (pybind11 enums carry ``.name``: "FLOAT", "HALF", ...)."""
    name = str(getattr(trt_dtype, "name", trt_dtype)).split(".")[-1].upper()
    if name not in NUMPY_DTYPES:
        raise RRLEdgeError(f"TensorRT data type {name} has no numpy equivalent the runner handles")
    return np.dtype(NUMPY_DTYPES[name])


def plan_chunks(n: int, min_batch: int, max_batch: int) -> List[Tuple[int, int, int]]:
    """How a batch of ``n`` pairs runs on a profile [min_batch, max_batch]: (start, stop, size) per chunk,
    ``size`` >= min_batch always. A chunk shorter than the minimum is padded up to it (TensorRT refuses a
    shape below the profile) and the padding's scores are dropped."""
    if not 1 <= min_batch <= max_batch:
        raise RRLEdgeError(f"batch profile min {min_batch} / max {max_batch} is not 1 <= min <= max")
    chunks = []
    for start in range(0, n, max_batch):
        stop = min(start + max_batch, n)
        chunks.append((start, stop, max(stop - start, min_batch)))
    return chunks


class _NamedTensors:
    """Engine I/O by tensor name (num_io_tensors, get_tensor_name, get_tensor_mode, get_tensor_profile_shape,
    set_input_shape, set_tensor_address, execute_async_v3): present from TensorRT 8.5 on and the only API from
    10.0, so one path serves 8.5, 8.6 and 10.x (the binding-index calls are deprecated in 8.5, gone in 10)."""

    def __init__(self, engine: "trt.ICudaEngine", context: "trt.IExecutionContext") -> None:
        import tensorrt as trt

        self.engine, self.context = engine, context
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]

    def shape(self, name: str) -> Tuple[int, ...]:
        dims = self.engine.get_tensor_shape(name)
        return tuple(dims[i] for i in range(len(dims)))  # Dims indexes like a tuple

    def dtype(self, name: str) -> np.dtype:
        return numpy_dtype(self.engine.get_tensor_dtype(name))

    def batch_range(self) -> Tuple[int, int]:
        """(min, max) batch of optimization profile 0, or the fixed batch of an engine built with one (trtexec
        from a static-batch ONNX): always the engine's own, never a manifest's."""
        fixed = self.shape(INPUT_NAMES[0])[0]
        if fixed > 0:
            return int(fixed), int(fixed)
        low, _, high = self.engine.get_tensor_profile_shape(INPUT_NAMES[0], 0)
        return int(low[0]), int(high[0])

    def enqueue(self, batch: int, addresses: Dict[str, int], stream_handle: int) -> bool:
        for name in self.inputs:
            if not self.context.set_input_shape(name, (batch,) + SAMPLE_SHAPE):
                return False
        for name, address in addresses.items():
            self.context.set_tensor_address(name, address)
        return bool(self.context.execute_async_v3(stream_handle))


class _Slot:
    """One buffer set: page-locked host and device arrays for max_batch pairs, and the event of its last copy."""

    def __init__(self, cuda: Any, max_batch: int, out_dtype: np.dtype, out_size: int) -> None:
        self.host: Dict[str, np.ndarray] = {
            name: cuda.pagelocked_empty((max_batch,) + SAMPLE_SHAPE, np.float32) for name in INPUT_NAMES
        }
        self.host[OUTPUT_NAME] = cuda.pagelocked_empty((max_batch, out_size), out_dtype)
        self.device: Dict[str, Any] = {name: cuda.mem_alloc(array.nbytes) for name, array in self.host.items()}
        self.event = blocking_event(cuda)

    def free(self) -> None:
        for allocation in self.device.values():
            allocation.free()
        for array in self.host.values():
            free = getattr(array.base, "free", None)  # pycuda's HostAllocation behind pagelocked_empty
            if free is not None:
                free()
        self.device, self.host = {}, {}


def gpu_index(device: Union[int, str, None], source: Any = "--device") -> int:
    """``--device``: 0, "1", "cuda" or "cuda:1" name a GPU by index; anything else is refused in one line."""
    text = "0" if device is None else str(device).strip().lower()
    text = "0" if text == "cuda" else text[5:] if text.startswith("cuda:") else text
    if not text.isdigit():
        raise InputError(f"{source}: --device {device!r}: a TensorRT engine runs on a GPU: give its index (0, 1, ...) "
                         "or cuda:N")
    return int(text)


def blocking_event(cuda: Any) -> Any:
    """A CUDA event whose synchronize() sleeps the host thread (BLOCKING_SYNC) instead of spinning a core on
    it; DISABLE_TIMING because it only orders work (CUDA: such events are the cheapest to record and query)."""
    return cuda.Event(cuda.event_flags.BLOCKING_SYNC | cuda.event_flags.DISABLE_TIMING)


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
    """Runs an engine on GPU ``device``: one built by ``rrl-edge build``, whose manifest is checked first, or with
    ``check_manifest=False`` one built elsewhere, checked only by TensorRT and the engine's own tensors."""

    backend = "tensorrt"

    def __init__(self, path: Union[str, Path], device: Union[int, str] = 0, check_manifest: bool = True) -> None:
        super().__init__(path)
        self.device = gpu_index(device, path)
        self.check_manifest = check_manifest
        self.manifest: Optional[EngineManifest] = None
        self.environment: Optional[Environment] = None
        self._batch_range: Optional[Tuple[int, int]] = None  # the engine's profile (min, max), once open
        self._cuda_context: Any = None
        self._cuda_thread = 0  # the thread that retained it: pycuda's detach() pushes only there
        self._errors: List[str] = []
        self._trt: Dict[str, Any] = {}  # logger, runtime, engine, context: kept alive together, freed in order
        self._io: Optional[_NamedTensors] = None
        self._stream: Any = None
        self._slots: List[_Slot] = []

    @property
    def precision(self) -> str:
        return self.manifest.precision if self.manifest else "?"

    @property
    def max_batch(self) -> Optional[int]:
        """The profile maximum: the engine's own once open, before that the manifest's (so callers that size
        batches before opening, like score_pairs, already cut them right; larger batches are split anyway)."""
        if self._batch_range is not None:
            return self._batch_range[1]
        if not self.check_manifest:
            return None  # no manifest to trust: the engine's own profile decides, once open
        if self.manifest is None:
            try:
                return EngineManifest.read(self.path).batch_max
            except InputError:
                return None  # open() says what is wrong with the manifest
        return self.manifest.batch_max

    def describe(self) -> Dict[str, str]:
        info = super().describe()
        if self.environment is not None:
            info.update(tensorrt=self.environment.tensorrt_version, device=f"{self.device}: {self.environment.gpu_name}",
                        compute_capability=self.environment.compute_capability)
        return info

    # ---- open: every check that needs no TensorRT first, then TensorRT's own ----

    def _read_engine(self, manifest: Optional[EngineManifest]) -> bytes:
        """The engine's bytes, read only after its manifest vouched for its size (check_size uses stat)."""
        if manifest is not None:
            manifest.check_size(self.path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read the engine ({exc.strerror})") from exc
        if not data:
            raise InputError(f"{self.path}: the engine file is empty; {rebuild_hint(self.path, manifest)}")
        if manifest is not None:
            manifest.check_bytes(self.path, data)
        return data

    def _open(self) -> None:
        if not self.from_file:
            raise InputError(f"{self.path}: the TensorRT runner takes an engine file (rrl.plan)")
        if self.path.suffix in (".onnx", ".pt", ".pth"):
            raise InputError(f"{self.path}: a model, not a TensorRT engine; {rebuild_hint(self.path)}")
        manifest = None
        if self.check_manifest:
            manifest = EngineManifest.read(self.path)
            manifest.check_interface(self.path)
        else:
            log.debug("%s: manifest not checked (check_manifest=False)", self.path)
        data = self._read_engine(manifest)
        version = require_tensorrt()
        env = self._select_device(version)
        if manifest is not None:
            for warning in manifest.check_environment(self.path, env):
                log.warning(warning)
        self.manifest, self.environment = manifest, env
        import pycuda.driver as cuda

        self._cuda_context = cuda.Device(self.device).retain_primary_context()  # see _select_device
        self._cuda_thread = threading.get_ident()
        try:
            with self._active():
                self._load(data, version)
        except BaseException:
            try:
                self._release()
            except Exception as exc:  # noqa: BLE001  (the load's own error is the one to report)
                log.debug("%s: cleaning up after a failed open: %s", self.path, exc)
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
        if self.manifest is not None and self.manifest.dla_core is not None:
            # the core the engine was built for: a runtime deserializes DLA engines onto IRuntime.DLA_core, core 0
            # unless set (TensorRT's IRuntime::setDLACore; microsoft/onnxruntime#26680 on JetPack 6.2 with
            # TensorRT 10.3: engines built for core 1 ran on core 0 until the runtime's core was set)
            runtime.DLA_core = self.manifest.dla_core
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
                             f"{rebuild_hint(self.path, self.manifest)}")
        self._trt["engine"] = engine
        context = engine.create_execution_context()
        if context is None:
            raise InputError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._trt["context"] = context
        self._io = _NamedTensors(engine, context)
        out_dtype, out_size = self._check_io()
        self._batch_range = self._io.batch_range()
        self._stream = cuda.Stream()
        self._slots = [_Slot(cuda, self._batch_range[1], out_dtype, out_size) for _ in range(2)]

    def _check_io(self) -> Tuple[np.dtype, int]:
        """The engine's own tensors match the runner (also when the manifest is not checked)."""
        io = self._io
        assert io is not None
        expected = sorted(INPUT_NAMES + (OUTPUT_NAME,))
        if sorted(io.names) != expected or sorted(io.inputs) != sorted(INPUT_NAMES):
            raise InputError(f"{self.path}: the engine's tensors are {io.names} (inputs {io.inputs}), the runner "
                             f"expects inputs {list(INPUT_NAMES)} and output {OUTPUT_NAME!r}; "
                             f"{rebuild_hint(self.path, self.manifest)}")
        for name in INPUT_NAMES:
            shape, dtype = io.shape(name), io.dtype(name)
            if shape[1:] != SAMPLE_SHAPE or not (shape[0] == -1 or shape[0] > 0) or dtype != np.float32:
                raise InputError(f"{self.path}: input {name!r} is {dtype} {shape}, the runner feeds float32 "
                                 f"{(-1,) + SAMPLE_SHAPE}; {rebuild_hint(self.path, self.manifest)}")
        out_shape = io.shape(OUTPUT_NAME)
        out_size = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        if out_size != 1:
            raise InputError(f"{self.path}: output {OUTPUT_NAME!r} has shape {out_shape}, expected one score per pair")
        return io.dtype(OUTPUT_NAME), out_size

    def layer_information(self) -> Optional[Dict[str, Any]]:
        """TensorRT's per-layer report of the open engine (IEngineInspector, JSON): layer names, types and
        the format/data type of every input, from which the device check tells INT8 kernels from a float
        fallback. Every supported version has it: TensorRT 8.5's bindings already define
        ICudaEngine.create_engine_inspector, EngineInspector.execution_context / get_engine_information and
        LayerInformationFormat.JSON (NVIDIA/TensorRT python/src/infer/pyCore.cpp, 8.5). None only where the
        installed bindings lack it (a stripped build of the Python module). Detailed only for engines built
        with ProfilingVerbosity.DETAILED (rrl-edge build sets it; a names-only report is what
        rrl_edge.export.device_check.int8_kernels then calls not checked); with a dynamic batch the formats
        read "N/A due to dynamic shapes" unless the inspector has a context whose input shapes are set, so
        the profile's maximum batch is set first."""
        import json

        import tensorrt as trt

        if not self.is_open or self.environment is None or self._batch_range is None:
            raise RRLEdgeError(f"{self.path}: open() the TensorRT runner first")
        engine, context = self._trt["engine"], self._trt["context"]
        if not hasattr(engine, "create_engine_inspector") or not hasattr(trt, "LayerInformationFormat"):
            return None
        with self._active():
            for name in INPUT_NAMES:
                context.set_input_shape(name, (self._batch_range[1],) + SAMPLE_SHAPE)
            inspector = engine.create_engine_inspector()
            inspector.execution_context = context
            text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        info = json.loads(text)
        return info if isinstance(info, dict) else {"Layers": info}

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
        """Each batch checked, then cut into chunks the profile accepts (plan_chunks): at most its maximum,
        and a short last chunk padded up to its minimum by repeating the last pair (scores dropped)."""
        assert self._batch_range is not None
        low, high = self._batch_range
        for number, (vis, other) in enumerate(batches):
            for name, array in ((INPUT_NAMES[0], vis), (INPUT_NAMES[1], other)):
                if (not isinstance(array, np.ndarray) or array.ndim != 4 or array.shape[1:] != SAMPLE_SHAPE
                        or not np.issubdtype(array.dtype, np.floating)):
                    got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
                    raise InputError(f"{self.path}: input {name!r} must be float (B, 1, {PATCH_SIZE}, {PATCH_SIZE}), got {got}")
            if len(vis) != len(other) or len(vis) == 0:
                raise InputError(f"{self.path}: batch {number} has {len(vis)} VIS and {len(other)} other-spectrum patches")
            chunks = plan_chunks(len(vis), low, high)
            for k, (start, stop, size) in enumerate(chunks):
                v, o = vis[start:stop], other[start:stop]
                if size > stop - start:
                    pad = size - (stop - start)
                    v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
                    o = np.concatenate([o, np.repeat(o[-1:], pad, axis=0)])
                yield k == len(chunks) - 1, stop - start, v, o

    def _pipeline(self, chunks: Iterator[Chunk]) -> Iterator[Tuple[bool, np.ndarray]]:
        """Double buffering on one stream: chunk k+1 is enqueued (copy in, compute, copy out) before the host
        waits for chunk k's scores; while the GPU works on k+1 the host fetches and stages chunk k+2 into the
        buffer set chunk k has just released."""
        pending: Deque[Tuple[_Slot, int, bool]] = deque()
        try:
            for k, (last, kept, vis, other) in enumerate(chunks):
                slot = self._slots[k % 2]
                with self._active():
                    self._enqueue(slot, vis, other)
                    pending.append((slot, kept, last))
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
                    self._wait_stream()

    def _enqueue(self, slot: _Slot, vis: np.ndarray, other: np.ndarray) -> None:
        import pycuda.driver as cuda

        assert self._io is not None
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
        slot.event.synchronize()  # BLOCKING_SYNC: the thread sleeps until the copy back is done
        return last, slot.host[OUTPUT_NAME][:n, 0].astype(np.float32)  # a copy; padded pairs' scores dropped

    def _wait_stream(self) -> None:
        """Wait for everything queued on the stream, sleeping on a blocking event (not stream.synchronize(),
        which spins unless the context was made with blocking sync)."""
        import pycuda.driver as cuda

        done = blocking_event(cuda)
        done.record(self._stream)
        done.synchronize()

    # ---- close ----

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free device and page-locked memory, then the TensorRT objects (context before engine), then our
        reference to the GPU's primary context, leaving the thread's context stack as _open found it.

        Every push is _active's, popped in its ``finally``. The one push we do not make is pycuda's own:
        detach() of a context that is not current pushes it, then releases it, relying on the release to pop
        it, which cuCtxDetach does and cuDevicePrimaryCtxRelease (what a retained primary context's detach
        calls) does not (inducer/pycuda src/cpp/cuda.hpp: context::detach, primary_context::detach_internal).
        Left alone, GPU ``device``'s released primary context stayed current on the thread after close, so
        the next CUDA runtime call there (torch, ONNX Runtime, another runner) ran on that device.
        _pop_if_current undoes exactly that push."""
        if self._cuda_context is None:
            return
        context, handle = self._cuda_context, int(getattr(self._cuda_context, "handle", 0) or 0)
        if threading.get_ident() != self._cuda_thread:
            handle = 0  # detach() from another thread pushes nothing (context::detach): nothing to undo
        try:
            with self._active():
                if self._stream is not None:
                    self._wait_stream()
                for slot in self._slots:
                    slot.free()
                self._slots, self._io, self._stream = [], None, None
                for key in ("context", "engine", "runtime", "logger"):
                    self._trt.pop(key, None)
        finally:
            self._cuda_context = None
            self._batch_range = None
            try:
                context.detach()
            finally:
                _pop_if_current(handle)


def _pop_if_current(handle: int) -> bool:
    """Pop context ``handle`` off this thread's CUDA driver stack when it is on top (see TensorRTRunner._release).
    Through libcuda with ctypes: pycuda's Context.pop() only pops what pycuda itself recorded as pushed."""
    if not handle:
        return False
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    current = ctypes.c_void_p()
    if lib.cuCtxGetCurrent(ctypes.byref(current)) != 0 or current.value != handle:
        return False
    return lib.cuCtxPopCurrent(ctypes.byref(ctypes.c_void_p())) == 0
