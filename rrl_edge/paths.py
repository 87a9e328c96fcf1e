"""Where a command may write: outputs never land on an input, and every output path can be written.

Every command (run, eval, parity, bench, export, build, data build, train) calls :func:`guard_outputs`
before it reads or computes anything: each output file (``--out``, ``--json``, ``--roc``, ``--plot``) and
each file an output folder will hold (``--out-dir`` contents) is resolved (symlinks too) and compared
with every input (resolved; a patch file brings the labels found beside it:
``rrl_edge.data.patchfile.data_inputs``). A match, an output inside
an input data folder, or an input inside a folder that will be replaced is refused in one line, so no
command can write scores over a patch file or a PNG over a checkpoint. The same pass refuses outputs
that could not be written (a folder where a file is wanted, a parent that is a file, a dangling symlink),
before minutes of work.

Also here: :class:`RunLock` (one writer per output folder) and :func:`sweep_stale` (temporary files and
staging folders left by a killed run). Standard library only: the device CLI uses it.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from rrl_edge.errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]
STALE_SECONDS = 3600.0  # a temp without a live owner this old is a leftover, not work in progress
_PID = re.compile(r"[.-]pid(\d+)[.-]|\.tmp-(\d+)-")  # the owner's pid, as pid_tag() and data build put it


def resolve(path: PathLike) -> Path:
    """Absolute path with every symlink that exists followed (a dangling one stays as it is)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _is_within(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def _check_writable_file(flag: str, path: Path) -> None:
    if os.path.islink(path) and not path.exists():
        raise OutputError(f"{flag} {path}: is a symlink to {os.readlink(path)}, which does not exist")
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder, expected a file name")
    _check_parents(flag, path)


def _check_parents(flag: str, path: Path) -> None:
    for parent in path.parents:
        if os.path.islink(parent) and not parent.exists():
            raise OutputError(f"{flag} {path}: {parent} is a symlink to {os.readlink(parent)}, which does not exist")
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {path}: cannot write in {parent} (permission denied or read-only)")
            return


def _check_writable_dir(flag: str, path: Path) -> None:
    if os.path.islink(path) and not path.exists():
        raise OutputError(f"{flag} {path}: is a symlink to {os.readlink(path)}, which does not exist")
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{flag} {path}: is a file, expected a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: cannot write in it (permission denied or read-only)")
        return
    _check_parents(flag, path)


def guard_outputs(
    inputs: Mapping[str, Iterable[Optional[PathLike]]],
    files: Mapping[str, Optional[PathLike]] = {},
    folders: Mapping[str, Tuple[Optional[PathLike], Optional[Sequence[str]]]] = {},
) -> None:
    """Refuse (OutputError, one line) any output that would write over, or into, an input.

    ``inputs``: flag -> the paths it reads (None entries skipped). ``files``: flag -> output file.
    ``folders``: flag -> (output folder, the names it will write there, or None when the whole folder is
    written or replaced). Missing inputs are compared too: the command reports them itself.
    """
    ins: List[Tuple[str, Path, Path]] = []  # (flag, as given, resolved)
    for flag, paths in inputs.items():
        for p in paths:
            if p:
                ins.append((flag, Path(p), resolve(p)))
    outs: List[Tuple[str, Path, Path]] = []  # output files: (flag, as given, resolved)
    for flag, p in files.items():
        if p:
            _check_writable_file(flag, Path(p))
            outs.append((flag, Path(p), resolve(p)))
    for flag, (folder, names) in folders.items():
        if not folder:
            continue
        _check_writable_dir(flag, Path(folder))
        real = resolve(folder)
        for in_flag, given, r in ins:
            if _is_within(real, r) and r.is_dir():
                raise OutputError(f"{flag} {folder}: is inside the input folder {given} ({in_flag}); "
                                  "refusing to write into an input")
            if names is None and _is_within(r, real):
                raise OutputError(f"{flag} {folder}: holds the input {given} ({in_flag}) and would be replaced; "
                                  "choose another folder")
        for name in names or ():
            outs.append((f"{flag}", Path(folder) / name, real / name))
    seen: Dict[Path, str] = {}
    for flag, given, real in outs:
        for in_flag, in_given, r in ins:
            if real == r:
                raise OutputError(f"{flag} {given}: is the input {in_given} ({in_flag}); refusing to write over an input")
            if r.is_dir() and _is_within(real, r):
                raise OutputError(f"{flag} {given}: is inside the input folder {in_given} ({in_flag}); "
                                  "refusing to write into an input")
        if real in seen and seen[real] != flag:
            raise OutputError(f"{flag} {given}: is also the output of {seen[real]}; give each output its own file")
        seen[real] = flag


FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL_BYTES = 16 << 20  # a write failed with this little left: the disk is the cause, whatever the message


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def mount_point(path: PathLike) -> Path:
    """The mount point of the file system that holds ``path`` (or would hold it: the nearest existing parent)."""
    p = resolve(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def disk_space(path: PathLike) -> Tuple[Path, int, int]:
    """(mount point, free bytes for this user, total bytes) of the disk holding ``path``."""
    mount = mount_point(path)
    st = os.statvfs(mount)
    return mount, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def full_disk_line(path: PathLike) -> str:
    """One line that names the full disk, not the model or the input a write happened to be about."""
    try:
        mount, free, total = disk_space(path)
    except OSError:
        return f"{path}: no space left on the disk that holds it"
    return (f"{path}: the disk is full ({mount}: {_size(free)} free of {_size(total)}); free some space or "
            "write the output elsewhere")


def is_full_disk(exc: BaseException, path: Optional[PathLike]) -> bool:
    """Whether a failed write came from a full disk: ENOSPC/EDQUOT, or any error (torch's "unexpected pos", numpy's
    "N requested and M written") while the disk holding ``path`` has almost nothing left."""
    if isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS:
        return True
    if path is None:
        return False
    try:
        return disk_space(path)[1] < NEARLY_FULL_BYTES
    except OSError:
        return False


def special_file_kind(path: PathLike) -> str:
    """What ``path`` is, in words, for a line that refuses it (a FIFO or device read as data hangs or means
    nothing, so commands say what they were given instead of an OS error about folders)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "cannot be read"
    kinds = ((stat.S_ISFIFO, "is a FIFO (named pipe)"), (stat.S_ISCHR, "is a character device"),
             (stat.S_ISBLK, "is a block device"), (stat.S_ISSOCK, "is a socket"), (stat.S_ISREG, "is a file"),
             (stat.S_ISDIR, "is a folder"))
    for test, words in kinds:
        if test(mode):
            return words
    return "is not a regular file or folder"


def cache_folder(env: str, default: PathLike) -> Path:
    """The cache folder named by environment variable ``env`` (else ``default``), refused in one line when it
    or a parent is a file: mkdir's "File exists" names neither the variable nor the file."""
    given = os.environ.get(env)
    folder = Path(given or default).expanduser()
    source = f"{env}={given}" if given else str(folder)
    for p in (folder, *folder.parents):
        if p.exists() or os.path.islink(p):
            if not p.is_dir():
                what = "is a file" if p == folder else f"has {p} in its path, which is not a folder"
                if p == folder and not p.is_file():
                    what = special_file_kind(p)
                raise OutputError(f"{source}: the cache folder {what}; point {env} at a folder")
            break
    return folder


# ------------------------------------------------------------------------------------ leftovers of killed runs


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def pid_tag() -> str:
    """The token temp names carry so a later run can tell whether their owner is still alive."""
    return f"pid{os.getpid()}"


def sweep_stale(folder: PathLike, patterns: Sequence[str], max_age: float = STALE_SECONDS) -> List[Path]:
    """Remove entries of ``folder`` matching ``patterns`` whose owning process is gone (pid in the name), or,
    without a pid, older than ``max_age`` seconds. Returns what was removed; never raises."""
    removed: List[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now, me = time.time(), os.getpid()
    for entry in entries:
        if not any(fnmatch.fnmatchcase(entry.name, pat) for pat in patterns):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        found = _PID.findall(entry.name)  # the last one: the tag comes after the target's own name
        pid = int(found[-1][0] or found[-1][1]) if found else None
        if pid == me:
            continue
        stale = (pid is not None and not pid_alive(pid)) or (pid is None and age > max_age) or age > 24 * max_age
        if not stale:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


# -------------------------------------------------------------------------------------------- one writer


class RunLock:
    """An exclusive lock on an output folder (``.NAME.lock`` beside it, holding the owner's pid).

    fcntl.flock: the kernel drops it when the owner dies, so a crashed run never blocks the next one.
    Beside the folder, not in it, so a run refused before its first step leaves no folder behind.
    """

    def __init__(self, folder: PathLike, flag: str = "--out-dir") -> None:
        folder = Path(folder)
        self.folder, self.flag = folder, flag
        self.path = resolve(folder).parent / f".{resolve(folder).name}.lock"
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise OutputError(f"{self.flag} {self.folder}: another run (pid {owner}) is writing there; "
                              "wait for it or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
