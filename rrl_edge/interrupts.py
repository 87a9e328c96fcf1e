"""Ctrl-C and SIGTERM: raised at once, and remembered.

The handlers raise between two bytecodes of the main thread, wherever it is, so every ``finally`` (temp files,
staging folders, locks) runs on the way out. When that spot is a finalizer or a weakref callback (importlib's
module-lock cleanup during a lazy import is one), Python prints "Exception ignored" and carries on, and a run told
to stop went on training. The request is therefore also remembered, and the loops that run long (training steps,
runner batches) call :func:`raise_if_requested` where stopping is safe.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType
from typing import Any, Dict, Iterator, Optional

from rrl_edge.errors import Terminated

_requested: Optional[int] = None  # the signal number of a stop asked for inside handled(), else None


def _stop_exception(signum: int) -> KeyboardInterrupt:
    """Terminated for SIGTERM, KeyboardInterrupt for Ctrl-C: the command line maps them to 143 and 130."""
    if signum == signal.SIGTERM:
        return Terminated(f"terminated by signal {signum}")
    return KeyboardInterrupt()


def _handle(signum: int, frame: Optional[FrameType]) -> None:
    global _requested
    _requested = signum
    raise _stop_exception(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the block (main thread only; elsewhere Python allows none) and restore the previous
    ones afterwards. A SIGINT the process was started with ignored (a background job) stays ignored."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = None
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:  # the swallowed stop: no "Exception ignored" traceback, it is raised again
        if not (_requested is not None and isinstance(info.exc_value, KeyboardInterrupt)):
            previous_hook(info)

    sys.unraisablehook = unraisable
    previous: Dict[int, object] = {signal.SIGTERM: signal.signal(signal.SIGTERM, _handle)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        sys.unraisablehook = previous_hook
        _requested = None


def raise_if_requested() -> None:
    """Raise the stop a handler already raised once, in case library code swallowed that first exception."""
    if _requested is not None:
        raise _stop_exception(_requested)
