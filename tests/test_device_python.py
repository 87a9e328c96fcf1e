"""The device side on JetPack 5's Python (3.8, pip 20.0.2, numpy 1.24) set up the way README says:
`scripts/setup_device.sh` (here with ONNX Runtime standing in for TensorRT, which needs a GPU).

Builds a Python 3.8 venv as JetPack 5 makes one (pyenv's interpreter, as on the machines here; pip downgraded
to JetPack 5's 20.0.2, which cannot install a pyproject-only project editable), runs the set-up script in it,
scores real pairs with `rrl-edge run` (the scores must equal those of this interpreter) and runs `pytest -m gpu`
there: with no torch, only the device test modules are collected and every GPU test is skipped with its reason.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEVICE_TESTS
from rrl_edge.runtime.registry import open_runner
from rrl_edge.runtime.runner import score_pairs

pytest_plugins = ("export_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = ["numpy==1.24.4", "onnxruntime==1.19.2"]  # the last releases with Python 3.8 wheels
JETPACK5_PIP = "pip==20.0.2"  # Ubuntu 20.04's python3-pip, what a JetPack 5 venv starts with


def _python38() -> str:
    for candidate in (shutil.which("python3.8"), str(Path.home() / ".pyenv/versions/3.8.18/bin/python")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
                return candidate
    pytest.skip("no Python 3.8 interpreter here (JetPack 5's Python); install one (pyenv install 3.8) to run this")


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def device_venv(tmp_path: Path) -> Path:
    """A JetPack 5-like venv (Python 3.8, pip 20.0.2, numpy 1.24.4) set up by `setup_device.sh --onnxruntime`."""
    python38 = _python38()
    venv = tmp_path / "py38"
    subprocess.run([python38, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + [JETPACK5_PIP, DEVICE_PACKAGES[0]], check=True, capture_output=True)
    setup = subprocess.run(["bash", str(ROOT / "scripts/setup_device.sh"), "--onnxruntime"], capture_output=True,
                           text=True, env=_clean_env(RRL_EDGE_VENV=str(venv)))
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    (venv / "setup.log").write_text(setup.stdout)
    return venv


@pytest.fixture(scope="module")
def venv38(tmp_path_factory) -> Path:
    return device_venv(tmp_path_factory.mktemp("device"))


@pytest.mark.slow
def test_setup_device_upgrades_jetpack5s_pip_and_keeps_numpy_124(venv38):
    said = (venv38 / "setup.log").read_text()
    summary = re.search(r"rrl-edge (\S+) \| Python (\S+) \| numpy (\S+) \| pip (\d+)", said)
    assert summary, said
    assert summary.group(2).startswith("3.8.") and summary.group(3) == "1.24.4"
    assert int(summary.group(4)) > 20  # pip 20.0.2 upgraded first
    assert "ONNX Runtime 1.19.2 (CPU) stands in for TensorRT" in said
    assert "device environment ready" in said


@pytest.mark.slow
def test_pytest_gpu_collects_on_the_device_and_skips_with_reasons(venv38):
    """`pytest -m gpu` in the device venv (no torch): only DEVICE_TESTS are collected, nothing errors, and
    every GPU test collected here (a workstation) is collected there too and skipped with its reason."""
    here = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *[f"tests/{name}" for name in DEVICE_TESTS if (ROOT / "tests" / name).is_file()]],
                          cwd=ROOT, capture_output=True, text=True)
    expected = {line for line in here.stdout.splitlines() if "::" in line}
    assert expected, here.stdout[-2000:]
    run = subprocess.run([str(venv38 / "bin/pytest"), "-m", "gpu", "-rs", "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, env=_clean_env())
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "device side (no torch here)" in out and "error" not in out.lower()
    assert re.search(rf"\b{len(expected)} skipped\b", out), out[-3000:]
    assert "TensorRT is not installed" in out or "no export folder" in out


def test_device_test_modules_import_nothing_a_jetson_lacks():
    """Static: the modules conftest collects on a device (and export/device_check.py, which they drive) import
    no torch, onnx, onnxruntime, scikit-learn or OpenCV: a Jetson has numpy, TensorRT, pycuda and pytest."""
    heavy = {"torch", "onnx", "onnxruntime", "sklearn", "cv2", "polygraphy", "PIL", "matplotlib"}
    files = [ROOT / "tests" / name for name in DEVICE_TESTS if (ROOT / "tests" / name).is_file()]
    assert len(files) >= 2
    for path in files + [ROOT / "tests/export_fixtures.py", ROOT / "export/device_check.py"]:
        tree = ast.parse(path.read_text())
        # export_fixtures' workstation fixtures import torch inside themselves, run only when a test asks for them
        nodes = tree.body if path.name == "export_fixtures.py" else list(ast.walk(tree))
        for node in nodes:
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [m for m in modules if m.split(".")[0] in heavy], (path.name, node.lineno, modules)


@pytest.mark.slow
def test_run_on_python38_with_numpy_and_onnxruntime_only(venv38, tmp_path, exported, proof_pairs):
    venv = venv38
    pairs = tmp_path / "pairs.npy"
    np.save(pairs, proof_pairs[:200])
    out = tmp_path / "scores.npy"
    env = _clean_env()
    run = subprocess.run([str(venv / "bin/rrl-edge"), "run", "--engine", str(exported["fp32"]), "--data", str(pairs),
                          "--out", str(out), "--batch", "64"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "onnxruntime fp32, 200 pairs" in run.stdout
    with open_runner(exported["fp32"]) as runner:
        np.testing.assert_allclose(np.load(out), score_pairs(runner, proof_pairs[:200]), atol=1e-5)

    probe = subprocess.run([str(venv / "bin/python"), "-c",
                            "import sys; import rrl_edge.runtime.tensorrt_runner, rrl_edge.manifest, rrl_edge.export.device_check; "
                            "print(sys.version_info[:2], 'torch' in sys.modules)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)  # not the source tree
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "(3, 8) False"


@pytest.mark.slow
def test_gpu_parity_script_runs_without_torch(venv38, tmp_path):
    """scripts/gpu_parity.sh with the device venv's Python (no torch): it says in one line what is missing and
    exits 1, instead of failing on an import."""
    run = subprocess.run(["bash", str(ROOT / "scripts/gpu_parity.sh")], capture_output=True, text=True, cwd=tmp_path,
                         env=_clean_env(PYTHON=str(venv38 / "bin/python"), DEPLOY=str(tmp_path)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PyTorch CUDA: torch not installed" in run.stdout
    assert run.stderr.strip().splitlines() == ["GPU parity needs TensorRT + pycuda or a CUDA build of PyTorch, and an "
                                               "NVIDIA GPU; neither is here."]


def test_setup_device_refuses_an_unknown_option_in_one_line():
    run = subprocess.run(["bash", str(ROOT / "scripts/setup_device.sh"), "--tensorrt-11"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == "setup_device.sh: unknown option --tensorrt-11 (expected --onnxruntime)"
