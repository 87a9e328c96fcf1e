"""A normal (non-editable) install works: every package is in the wheel, and the commands run from it.

The fast test reads pyproject.toml: every folder with an ``__init__.py`` (under rrl_edge/, and the mapped
export/, calibration/, runtime/) is in its package list (``rrl_edge.baselines`` was not, and
``rrl-edge eval --baseline sift`` failed after ``pip install .``). The slow one builds the wheel, installs it
into fresh venvs and runs `rrl-edge eval --baseline sift` (workstation) and `rrl-edge run` on an ONNX model
with only numpy and ONNX Runtime on Python 3.8 (JetPack 5).
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ("export_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"export": "rrl_edge.export", "calibration": "rrl_edge.calibration", "runtime": "rrl_edge.runtime"}


def _pyproject():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomli = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11+) or tomli")
        return tomli.loads((ROOT / "pyproject.toml").read_text())
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _packages_on_disk():
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] == "rrl_edge":
            found.add(".".join(rel.parts))
        elif rel.parts[0] in MAPPED:
            found.add(".".join((MAPPED[rel.parts[0]],) + rel.parts[1:]))
    return found


def test_every_package_folder_is_installed():
    config = _pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    assert _packages_on_disk() == listed, f"missing: {_packages_on_disk() - listed}, stale: {listed - _packages_on_disk()}"
    assert config["package-dir"] == {"rrl_edge": "rrl_edge", **{v: k for k, v in MAPPED.items()}}
    extras = _pyproject()["project"]["optional-dependencies"]
    assert not [d for deps in extras.values() for d in deps if d.startswith("polygraphy")]  # pinned and unused: gone


def _wheel(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheels = list(out.glob("rrl_edge-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.slow
def test_the_wheel_installs_and_runs_eval_with_the_sift_baseline(tmp_path, visnir_test):
    """A fresh venv with the wheel installed (not editable). Its third-party packages (torch, OpenCV, ...)
    come from this environment's site-packages through a .pth line, which puts the folder on sys.path
    without running its .pth files, so this checkout's editable rrl_edge stays invisible there."""
    wheel = _wheel(tmp_path)
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for package in ("baselines", "export", "calibration", "runtime", "training", "data", "models"):
        assert f"rrl_edge/{package}/__init__.py" in names, package
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_workstation_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)
    where = subprocess.run([str(py), "-c", "import rrl_edge, rrl_edge.baselines; print(rrl_edge.__file__)"],
                           capture_output=True, text=True, env=_clean_env(), cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.strip().startswith(site), where.stdout + where.stderr

    from rrl_edge.export.parity import proof_sets

    sets = proof_sets(visnir_test, 32, seed=0)  # 256 real labelled test pairs, half matching
    pairs = np.concatenate([ps.patches for ps in sets.values()])
    labels = np.concatenate([ps.labels for ps in sets.values()]).astype(np.uint8)
    np.save(tmp_path / "X.npy", pairs)
    np.save(tmp_path / "X_labels.npy", labels)
    run = subprocess.run([str(venv / "bin" / "rrl-edge"), "eval", "--data", str(tmp_path / "X.npy"), "--baseline",
                          "sift", "--json", str(tmp_path / "eval.json")], capture_output=True, text=True,
                         env=_clean_env(), cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    import json

    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["baseline"]["method"] == "sift" and result["categories"]["X"]["pairs"] == len(pairs)
    assert result["mean_fpr95"] < result["baseline"]["mean_fpr95"]  # the shipped model beats SIFT, as in README


@pytest.mark.slow
def test_the_wheel_runs_an_onnx_model_with_numpy_and_onnxruntime_only(tmp_path, exported, proof_pairs):
    from test_device_python import DEVICE_PACKAGES, _python38

    python38 = _python38()
    wheel = _wheel(tmp_path)
    venv = tmp_path / "py38"
    subprocess.run([python38, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + DEVICE_PACKAGES, check=True, capture_output=True)
    subprocess.run(pip + [str(wheel)], check=True, capture_output=True)  # its one dependency (numpy) is there
    np.save(tmp_path / "pairs.npy", proof_pairs[:100])
    run = subprocess.run([str(venv / "bin/rrl-edge"), "run", "--engine", str(exported["fp32"]), "--data",
                          str(tmp_path / "pairs.npy"), "--out", str(tmp_path / "s.npy")],
                         capture_output=True, text=True, env=_clean_env(), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert np.load(tmp_path / "s.npy").shape == (100,)
    mods = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                          text=True).stdout.lower()
    assert "torch" not in mods and "onnx==" not in mods
