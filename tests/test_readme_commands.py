"""Every `rrl-edge ...` command in README.md and docs/*.md parses with the command line as it is: a renamed or
removed flag fails here, not in a user's terminal. Only the parser runs (nothing is executed); commands with a
`...` placeholder are left out."""

import re
import shlex
from pathlib import Path
from typing import List, Tuple

import pytest

from rrl_edge import __version__
from rrl_edge.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?rrl-edge(?:\s.*)?$")


def documented_commands(text: str) -> List[str]:
    """The rrl-edge command lines of a Markdown text's code blocks (continuations joined, `&&` chains split)."""
    found = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            found += [part.strip() for part in re.split(r"\s(?:&&|\|\||;)\s", line) if COMMAND.match(part.strip())]
    return found


def argv_of(command: str) -> List[str]:
    words = shlex.split(command, comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # RRL_EDGE_DATA=... rrl-edge ...
        words.pop(0)
    return words[1:]


def _all() -> List[Tuple[str, str]]:
    return [(path.name, cmd) for path in DOCS for cmd in documented_commands(path.read_text())
            if "..." not in argv_of(cmd)]


def test_the_docs_hold_the_workflow():
    commands = {argv_of(cmd)[0] for _, cmd in _all() if argv_of(cmd)}
    assert {"train", "eval", "export", "build", "device-check", "run", "parity", "bench", "register"} <= commands


@pytest.mark.parametrize("where,command", _all())
def test_every_documented_command_parses(where, command, capsys):
    try:
        build_parser().parse_args(argv_of(command))
    except SystemExit as exc:
        pytest.fail(f"{where}: `{command}` does not parse: {capsys.readouterr().err.strip()} (exit {exc.code})")


def test_a_wrong_flag_is_caught(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv_of("rrl-edge run --model rrl.plan --data p.npy --batch-size 64"))
    assert exc.value.code == 2 and "--batch-size" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"rrl-edge {__version__}"


def _hidden_flags(argv: List[str]) -> List[str]:
    """The flags of ``argv`` its command keeps only as hidden aliases (old spellings)."""
    import argparse

    parser = build_parser()
    words = list(argv)
    while True:  # walk down to the leaf sub-command's parser ("data build", "export", ...)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not words or words[0] not in subs[0].choices:
            break
        parser = subs[0].choices[words.pop(0)]
    hidden = {flag for a in parser._actions if a.help == argparse.SUPPRESS for flag in a.option_strings}
    return [w.split("=")[0] for w in words if w.split("=")[0] in hidden]


@pytest.mark.parametrize("where,command", _all())
def test_documented_commands_use_the_documented_spellings(where, command):
    """Old spellings still parse for a release, but the manual teaches the current ones."""
    assert not _hidden_flags(argv_of(command)), f"{where}: `{command}` uses an old spelling"
