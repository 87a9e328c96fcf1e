"""The layer rule (README, Layout), held for every module: nothing imports upward, and no two packages import
each other in a circle. Imports inside functions count too: a lazy import is still a dependency.

Modules are named as they install (pyproject's package-dir mapping: export/ is rrl_edge.export, ...).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest layer first. A module belongs to the longest prefix that names it.
LAYERS: Dict[str, int] = {
    # 0: shared contracts, errors, models and data
    "rrl_edge": 0,
    "rrl_edge.contracts": 0,
    "rrl_edge.errors": 0,
    "rrl_edge.atomic": 0,
    "rrl_edge.argtypes": 0,
    "rrl_edge.metrics": 0,
    "rrl_edge.fpr95_table": 0,
    "rrl_edge.manifest": 0,
    "rrl_edge.paths": 0,
    "rrl_edge.plots": 0,
    "rrl_edge.models": 0,
    "rrl_edge.data": 0,
    "rrl_edge.checkpoint": 0,
    "rrl_edge.patch_sources": 0,
    # 1: runtime (runners) and calibration
    "rrl_edge.runtime": 1,
    "rrl_edge.calibration": 1,
    # 2: export, training, evaluation (and what is built on the runners: baselines, registration)
    "rrl_edge.export": 2,
    "rrl_edge.training": 2,
    "rrl_edge.evaluate": 2,
    "rrl_edge.separation": 2,
    "rrl_edge.baselines": 2,
    "rrl_edge.registration": 2,
    # 3: the command line
    "rrl_edge.cli": 3,
}
LAYER_NAMES = {0: "core", 1: "runtime/calibration", 2: "export/training/evaluation", 3: "command line"}


def _package_dirs() -> Dict[str, Path]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


def project_modules() -> Dict[str, Path]:
    """Every installed module's dotted name and its file, by pyproject's package-dir mapping."""
    modules: Dict[str, Path] = {}
    dirs = _package_dirs()
    for package, folder in sorted(dirs.items(), key=lambda kv: -len(kv[0])):
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # a subfolder mapped elsewhere (rrl_edge/ holds no export/, but be exact) keeps its own mapping
            modules.setdefault(name, path)
    return modules


def layer_of(module: str) -> Tuple[str, int]:
    """The layer table entry (prefix, layer) that owns ``module``: the longest matching prefix."""
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise KeyError(module)
    return best, LAYERS[best]


def unit_of(module: str) -> str:
    """The package a module counts under for cycles: rrl_edge.X for anything below rrl_edge.X."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports(path: Path, module: str) -> Iterator[Tuple[int, str]]:
    """(line, imported module) for every project import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rrl_edge":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rrl_edge":
                continue
            for alias in node.names:  # `from rrl_edge.data import build` imports the module rrl_edge.data.build
                yield node.lineno, f"{target}.{alias.name}"


def _resolve(name: str, known: Dict[str, Path]) -> str:
    """The module an import names (a `from X import attr` names X when attr is not a module)."""
    while name and name not in known:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def wrong_way_imports(modules: Dict[str, Path]) -> List[str]:
    problems = []
    for module, path in sorted(modules.items()):
        _, own = layer_of(module)
        for line, target in imports(path, module):
            target = _resolve(target, modules)
            if not target:
                continue
            _, theirs = layer_of(target)
            if theirs > own:
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                problems.append(f"{shown}:{line}: {module} ({LAYER_NAMES[own]}) imports {target} "
                                f"({LAYER_NAMES[theirs]}), a higher layer")
    return problems


def package_cycles(modules: Dict[str, Path]) -> List[List[str]]:
    """Strongly connected groups of more than one package in the package import graph (Tarjan)."""
    graph: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        src = unit_of(module)
        graph.setdefault(src, set())
        for _, target in imports(path, module):
            target = _resolve(target, modules)
            if target and unit_of(target) != src and unit_of(target) != "rrl_edge":
                graph[src].add(unit_of(target))
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    groups: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_every_module_has_a_layer():
    modules = project_modules()
    assert "rrl_edge.runtime.runner" in modules and "rrl_edge.export.pipeline" in modules
    unplaced = []
    for module in modules:
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"modules with no layer (add them to LAYERS and README's Layout): {unplaced}"


def test_no_module_imports_upward():
    problems = wrong_way_imports(project_modules())
    assert not problems, "wrong-way imports:\n" + "\n".join(problems)


def test_no_import_cycle_between_packages():
    cycles = package_cycles(project_modules())
    assert not cycles, f"packages that import each other in a circle: {cycles}"


def test_the_checks_catch_a_wrong_way_import(tmp_path):
    """The rule can fail: a core module importing the runtime, and two packages importing each other."""
    core = tmp_path / "core.py"
    core.write_text("def f():\n    from rrl_edge.runtime.registry import make_runner\n")
    runtime = tmp_path / "runtime.py"
    runtime.write_text("from rrl_edge.data import store\n")
    fake = {"rrl_edge.data.fake": core, "rrl_edge.runtime.registry": runtime, "rrl_edge.data.store": runtime}
    problems = wrong_way_imports({"rrl_edge.data.fake": core, "rrl_edge.runtime.registry": runtime})
    assert len(problems) == 1 and "core.py:2" in problems[0] and "a higher layer" in problems[0]
    assert package_cycles(fake) == [["rrl_edge.data", "rrl_edge.runtime"]]
