"""Atomic file writes: a temporary file beside the target, then a rename, so no reader sees half a file.

Every writer of the project (checkpoints, patch builds, JSON reports, plots, ONNX models, engines) goes
through :func:`atomic_write`, so a crash or a failed check never leaves a half-written artifact.
Needs only the standard library: the device runtime uses it too.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from rrl_edge.errors import OutputError
from rrl_edge.paths import FULL_DISK_ERRNOS, full_disk_line, is_full_disk, pid_tag, sweep_stale

PathLike = Union[str, "os.PathLike[str]"]


def _written_into(path: Path) -> bool:
    """True for what must be written into, never replaced: a character device (/dev/null), a FIFO, a socket, or a
    link to one (/dev/stdout). Renaming over those would swap a device or a pipe for a regular file."""
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _write_into(path: Path, write: Callable[[Path], None]) -> Path:
    """Render to a private temporary file, then stream it into ``path`` (opened for writing, links followed)."""
    fd, tmp_name = tempfile.mkstemp(prefix="rrl-edge.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:  # /dev/full, a full pipe reader's disk: the device's word, named
            raise OutputError(f"{path}: no space left writing into it ({exc.strerror})") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a unique temporary path beside ``path``, then rename it onto ``path``.

    A device, FIFO or socket (or a link to one) is written into instead; a link to a regular file keeps its link
    and the file it points to is replaced."""
    path = Path(path)
    if _written_into(path):
        return _write_into(path, write)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, [f".{glob.escape(path.name)}.*.tmp"])  # this target's temps from killed runs
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{pid_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; artifacts are meant to be shared
        os.replace(tmp, path)
    except Exception as exc:
        if is_full_disk(exc, path.parent):  # asked while the temp still holds what it could write
            raise OutputError(full_disk_line(path)) from None
        if isinstance(exc, OSError) and exc.filename is None:  # name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(obj: Any, path: PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def save_figure(fig: Any, path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def check_replaceable_folder(out: Path, marker: str, what: str) -> None:
    """Only an earlier output of the same kind (it holds ``marker``) or an empty folder may be replaced, never a
    user's folder: a one-line DataError otherwise."""
    from rrl_edge.errors import DataError

    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise DataError(f"{out}: exists, is not empty and is not {what}; refusing to replace it")


def install_folder(tmp: Path, out: Path, marker: str, what: str) -> None:
    """Move a finished folder into place, replacing an older complete output (checked again, just before)."""
    import shutil
    import uuid

    check_replaceable_folder(out, marker, what)
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        with signals_deferred():  # Ctrl-C between the two renames would leave no folder at all
            os.replace(out, old)
            os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (on the main thread) until the block is done; a pending one is then delivered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
