"""Which runner runs an artifact: by ``--backend`` or by the file's suffix. Adding a backend = one line here.

Runner modules are imported only when chosen, so a device loads just the backend it has.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from rrl_edge.errors import InputError
from rrl_edge.runtime.runner import Runner

BACKENDS: Dict[str, Tuple[str, str]] = {
    "tensorrt": ("rrl_edge.runtime.tensorrt_runner", "TensorRTRunner"),
    "onnxruntime": ("rrl_edge.runtime.onnxruntime_runner", "OnnxRuntimeRunner"),
    "torch": ("rrl_edge.runtime.torch_runner", "TorchRunner"),
}
SUFFIXES = {".plan": "tensorrt", ".engine": "tensorrt", ".trt": "tensorrt", ".onnx": "onnxruntime", ".pt": "torch", ".pth": "torch"}


def backend_for(path: Union[str, Path], backend: str = "auto") -> str:
    """The backend for ``path``: the one asked for, else the one its suffix implies."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
        return backend
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: cannot tell the backend from the suffix {suffix!r} (expected "
                         f"{', '.join(sorted(SUFFIXES))}); pass --backend")
    return SUFFIXES[suffix]


def make_runner(path: Union[str, Path], backend: str = "auto", **options: Any) -> Runner:
    """A closed runner for ``path`` (options go to the runner, e.g. threads=2)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: artifact not found" if not path.exists() else f"{path}: is not a file")
    module_name, class_name = BACKENDS[backend_for(path, backend)]
    runner_class = getattr(importlib.import_module(module_name), class_name)
    runner: Runner = runner_class(path, **options)
    return runner


def open_runner(path: Union[str, Path], backend: str = "auto", **options: Any) -> Runner:
    """An open runner for ``path``; close it (or use it in a ``with`` block) when done."""
    return make_runner(path, backend, **options).open()
