"""The TensorRT code type-checks against tensorrt-stubs (scripts/typecheck.sh, as in CI); device code keeps to Python 3.8."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tensorrt_code_passes_mypy():
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")
    pytest.importorskip("tensorrt_stubs", reason="tensorrt-stubs is not installed (scripts/setup.sh installs it)")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "typecheck.sh")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


# The code a Jetson runs keeps to Python 3.8 (JetPack 5). mypy 2.x cannot check that (it refuses
# --python-version below 3.10), so the grammar is parsed as 3.8 and the usual 3.9+ slips are looked for.
DEVICE_MODULES = sorted(
    [p for p in (ROOT / "runtime").glob("*.py") if p.name != "torch_runner.py"]
    + [ROOT / "rrl_edge" / name for name in ("errors.py", "atomic.py", "contracts.py", "manifest.py", "metrics.py",
                                               "fpr95_table.py")]
    + [ROOT / "export" / name for name in ("gpu.py", "tensorrt_build.py", "device_check.py", "commands.py")]
)
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
NEWER_CALLS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9",
               "cache": "3.9", "pairwise": "3.10", "bit_count": "3.10"}
NEWER_KEYWORDS = {("zip", "strict"): "3.10", ("dataclass", "slots"): "3.10", ("dataclass", "kw_only"): "3.10"}


def _python38_problems(path: Path) -> list:
    import ast

    source = path.read_text()
    try:
        tree = ast.parse(source, str(path), feature_version=(3, 8))
    except SyntaxError as exc:
        return [f"{path.name}:{exc.lineno}: not Python 3.8 syntax ({exc.msg})"]
    lazy = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    annotation_nodes = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in args.args + args.kwonlyargs + args.posonlyargs] + [node.returns]
            annotations += [a.annotation for a in (args.vararg, args.kwarg) if a is not None]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if annotation is not None:
                annotation_nodes.update(id(n) for n in ast.walk(annotation))
    problems = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        in_annotation = id(node) in annotation_nodes
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS
                and not (in_annotation and lazy)):
            problems.append(f"{where}: {node.value.id}[...] is evaluated at runtime (3.9+); use typing.{node.value.id.title()}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and in_annotation and not lazy:
            problems.append(f"{where}: X | Y annotation needs `from __future__ import annotations` on 3.8")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and name in NEWER_CALLS:
                problems.append(f"{where}: .{name}() is Python {NEWER_CALLS[name]}+")
            for keyword in node.keywords:
                if (name, keyword.arg) in NEWER_KEYWORDS:
                    problems.append(f"{where}: {name}({keyword.arg}=...) is Python {NEWER_KEYWORDS[(name, keyword.arg)]}+")
    return problems


def test_device_modules_keep_to_python_38():
    assert any(p.name == "tensorrt_runner.py" for p in DEVICE_MODULES)
    problems = [problem for path in DEVICE_MODULES for problem in _python38_problems(path)]
    assert not problems, "\n".join(problems)


def test_the_python_38_check_catches_newer_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import dataclasses\n"
                   "def f(x: list[int]) -> int | None:\n    return None\n"
                   "Pairs = dict[str, int]\n"
                   "@dataclasses.dataclass(slots=True)\nclass A:\n    x: int = 0\n"
                   "y = 'ab'.removeprefix('a')\n")
    problems = "\n".join(_python38_problems(bad))
    for what in ("list[...]", "X | Y", "dict[...]", "dataclass(slots=...)", ".removeprefix()"):
        assert what in problems
    bad.write_text("match = 1\nmatch match:\n    case 1:\n        pass\n")
    assert "not Python 3.8 syntax" in "\n".join(_python38_problems(bad))
