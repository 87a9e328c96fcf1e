"""Which runner runs an artifact: the one registry of backends that every command reads its choices from.

Adding a backend is one runner file plus one ``Backend`` line below: `run`, `parity`, `bench` and `register` take
their ``--backend`` choices, the suffixes they recognise and the options they pass from here. Runner modules are
imported only when chosen, so a device loads just the backend it has.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import numpy as np

from rrl_edge.errors import InputError
from rrl_edge.runtime.runner import Runner, score_pairs


@dataclass(frozen=True)
class Backend:
    """One backend: its runner class (imported lazily), the files it opens, the in-memory objects it takes
    (by the top-level module of their type, Polygraphy-loader style) and the command-line options it accepts."""

    name: str
    module: str
    runner: str
    suffixes: Tuple[str, ...]
    objects: Tuple[str, ...] = ()
    options: Tuple[str, ...] = ()

    def runner_class(self) -> Type[Runner]:
        cls: Type[Runner] = getattr(importlib.import_module(self.module), self.runner)
        return cls


_ALL = (
    Backend("tensorrt", "rrl_edge.runtime.tensorrt_runner", "TensorRTRunner", (".plan", ".engine", ".trt"),
            options=("device", "check_manifest")),
    Backend("onnxruntime", "rrl_edge.runtime.onnxruntime_runner", "OnnxRuntimeRunner", (".onnx",),
            objects=("builtins.bytes", "onnxruntime"), options=("threads",)),
    Backend("torch", "rrl_edge.runtime.torch_runner", "TorchRunner", (".pt", ".pth"),
            objects=("torch", "rrl_edge.models"), options=("threads", "device", "polarity")),
)
BACKENDS: Dict[str, Backend] = {b.name: b for b in _ALL}
SUFFIXES: Dict[str, str] = {suffix: b.name for b in _ALL for suffix in b.suffixes}
AUTO = "auto"
MODEL_OPTIONS = ("polarity",)  # options that change what a model computes, not how it runs


def backend_choices() -> List[str]:
    """``--backend`` choices: auto (from the file's suffix) and every registered backend."""
    return [AUTO, *BACKENDS]


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def backend_for(source: Any, backend: str = AUTO) -> str:
    """The backend for ``source`` (a path or an in-memory model): the one asked for, else the one implied."""
    if backend != AUTO:
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; choose from {', '.join(backend_choices())}")
        return backend
    if not _is_path(source):
        kinds = {f"{t.__module__}.{t.__name__}" for t in type(source).__mro__}
        for b in _ALL:
            if any(k == o or k.startswith(o + ".") for k in kinds for o in b.objects):
                return b.name
        raise InputError(f"no backend takes a {type(source).__name__} object; pass a file or --backend")
    suffix = Path(source).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{source}: cannot tell the backend from the suffix {suffix!r} (expected "
                         f"{', '.join(sorted(SUFFIXES))}); pass --backend")
    return SUFFIXES[suffix]


def runner_options(source: Any, backend: str = AUTO, **given: Any) -> Dict[str, Any]:
    """The options of ``given`` (threads=..., device=...) that the chosen backend takes; None means unset.
    A model option (``polarity``) given for a backend that does not take it is an error, not dropped: an exported
    graph keeps what it was exported with."""
    accepted = BACKENDS[backend_for(source, backend)].options
    for name in MODEL_OPTIONS:
        if given.get(name) is not None and name not in accepted:
            raise InputError(f"{source}: --{name} applies to a checkpoint; an exported graph keeps the {name} it was "
                             f"exported with (rrl-edge export --{name} ...)")
    return {k: v for k, v in given.items() if k in accepted and v is not None}


def make_runner(source: Any, backend: str = AUTO, **options: Any) -> Runner:
    """A closed runner for ``source``: a file, or an in-memory model (ONNX bytes or session, torch module)."""
    if isinstance(source, Runner):
        return source
    if _is_path(source):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: artifact not found" if not path.exists() else f"{path}: is not a file")
    return BACKENDS[backend_for(source, backend)].runner_class()(source, **options)


def open_runner(source: Any, backend: str = AUTO, **options: Any) -> Runner:
    """An open runner for ``source``; close it (or use it in a ``with`` block) when done."""
    return make_runner(source, backend, **options).open()


def score_with(
    model: Any,
    pairs: np.ndarray,
    batch_size: int = 256,
    show_progress: bool = False,
    desc: Optional[str] = None,
    source: str = "input",
    backend: str = AUTO,
    **options: Any,
) -> np.ndarray:
    """Scores of (N, 2, 64, 64) ``pairs`` by any artifact or in-memory model (a runner, a file, ONNX bytes or
    session, a torch module), through its runner and the one batching loop, ``score_pairs``. A runner handed in
    is left as it was found (open or not); one made here is closed."""
    if isinstance(model, Runner):
        return score_pairs(model, pairs, batch_size, show_progress, desc, source)
    with make_runner(model, backend, **options) as runner:
        return score_pairs(runner, pairs, batch_size, show_progress, desc, source)
