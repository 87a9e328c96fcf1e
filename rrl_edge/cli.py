"""The `rrl-edge` command line: one entry point, one sub-command per job.

The commands live beside the code they run, each module registering its own through ``add_commands(sub)``;
:data:`COMMAND_MODULES` is the one list of them. Heavy imports (torch, cv2, sklearn) happen inside the
sub-commands, so `rrl-edge --help` is instant and a device without torch can still run the commands that do not
need it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from rrl_edge import interrupts
from rrl_edge.data import commands as data_commands
from rrl_edge.errors import RRLEdgeError, Terminated
from rrl_edge.export import commands as export_commands
from rrl_edge.registration import commands as registration_commands
from rrl_edge.runtime import bench_command, parity_command, run_command
from rrl_edge.training import commands as training_commands

# Every sub-command of `rrl-edge`, in --help's order: each module's add_commands(sub) registers its own.
COMMAND_MODULES = (
    data_commands,  # data build, data synth
    training_commands,  # model-info, train, eval, qat
    export_commands,  # export, build, device-check
    run_command,  # run
    parity_command,  # parity
    bench_command,  # bench
    registration_commands,  # register, register-eval
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line like every other error (no usage block); --help still shows it."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from rrl_edge import __version__

    parser = _Parser(prog="rrl-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rrl-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


# Which extra brings a package a command imported (the top-level module of the ImportError).
EXTRAS = {"torch": "train", "cv2": "train", "PIL": "train", "matplotlib": "train", "sklearn": "runtime",
          "tqdm": "runtime", "onnx": "export", "onnxsim": "export", "onnxslim": "export", "onnxruntime": "export",
          "polygraphy": "export", "tensorrt": "tensorrt", "pycuda": "tensorrt"}
_SUBJECT_FLAGS = ("model", "engine", "reference", "resume", "init_from", "data", "artifacts", "out_dir",
                  "out", "json")


def _subject(args: argparse.Namespace) -> str:
    """The file a command was mainly about, for messages about errors that do not name one themselves."""
    for name in _SUBJECT_FLAGS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return str(value)
    return "(no file)"


_OUTPUT_FLAGS = ("out_dir", "out", "json", "roc", "plot", "hist", "warp", "overlay")


def _full_disk(exc: BaseException, args: argparse.Namespace) -> Optional[str]:
    """The full disk named as the disk, not as the model or data a failed write happened to be about: the file
    of an ENOSPC error, else the first output whose disk has (almost) nothing left."""
    from rrl_edge.paths import full_disk_line, is_full_disk

    if isinstance(exc, RRLEdgeError) or isinstance(exc, MemoryError):
        return None
    filename = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    if filename and is_full_disk(exc, None):
        return full_disk_line(filename)
    for name in _OUTPUT_FLAGS:
        value = getattr(args, name, None)
        if isinstance(value, (str, os.PathLike)) and value and is_full_disk(exc, Path(value).parent if name != "out_dir" else value):
            return full_disk_line(value)
    return None


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    """What escaped a command, as one line that names the file."""
    if isinstance(exc, ImportError) and not isinstance(exc, RRLEdgeError) and (exc.name or "").split(".")[0] != "rrl_edge":
        module = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(module)
        hint = f"pip install 'rrl-edge[{extra}]'" if extra else f"pip install {module or 'the missing package'}"
        return f"{_subject(args)}: needs {module or 'a package'} ({exc}); install it with: {hint}"
    full = _full_disk(exc, args)
    if full:
        return full
    if isinstance(exc, OSError) and not isinstance(exc, RRLEdgeError):
        where = exc.filename or _subject(args)
        also = f" -> {exc.filename2}" if exc.filename2 else ""
        return f"{where}{also}: {exc.strerror or type(exc).__name__}" + (f" ({exc})" if not exc.strerror else "")
    if isinstance(exc, MemoryError):
        return f"{_subject(args)}: out of memory ({exc or 'MemoryError'})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RRLEdgeError):
        return text
    return f"{_subject(args)}: {type(exc).__name__}: {text[:500]}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command. Whatever escapes it becomes one line on stderr and an exit code: 2 for an error, 130
    for Ctrl-C, 143 for SIGTERM (raised as an exception, so temp files and staging folders are removed on the
    way out). RRL_EDGE_DEBUG=1 shows the traceback instead."""
    try:
        os.getcwd()
    except OSError:  # relative paths would resolve nowhere and torch's oneMKL dies loading its libraries
        print("rrl-edge: error: the working directory no longer exists (deleted or unmounted); "
              "cd into an existing folder and run again", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        with interrupts.handled():
            return int(args.func(args))
    except Terminated:
        print(f"rrl-edge {args.command}: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"rrl-edge {args.command}: interrupted; temporary files removed", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the one place every failure becomes one line)
        if os.environ.get("RRL_EDGE_DEBUG") and not isinstance(exc, RRLEdgeError):
            raise
        print(f"rrl-edge {args.command}: error: {_one_line(exc, args)}", file=sys.stderr)
        return 2

INTERRUPTED = (130, 143)  # main()'s codes for Ctrl-C and SIGTERM


def entry() -> None:
    """The `rrl-edge` program: main()'s exit code. After Ctrl-C or SIGTERM the run has already removed what it
    was writing and said so in one line; it then leaves without the interpreter's teardown, whose finalizers
    (a loader thread inside torch, a half-run generator) made an interrupted run exit as killed by SIGINT now and
    then instead of with 130."""
    code = main()
    if code in INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
