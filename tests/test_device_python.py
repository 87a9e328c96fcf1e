"""The device runtime on JetPack 5's Python (3.8) with only what a device has: numpy and ONNX Runtime.

Builds a Python 3.8 venv (pyenv's interpreter, as on the machines here), installs rrl-edge without its
workstation dependencies, and scores real pairs with `rrl-edge run`; the scores must equal those of this
interpreter. The TensorRT runner module is imported there too (TensorRT itself loads only on open).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.runtime.registry import open_runner
from rrl_edge.runtime.runner import score_pairs

pytest_plugins = ("export_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = ["numpy==1.24.4", "onnxruntime==1.19.2"]  # the last releases with Python 3.8 wheels


def _python38() -> str:
    for candidate in (shutil.which("python3.8"), str(Path.home() / ".pyenv/versions/3.8.18/bin/python")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
                return candidate
    pytest.skip("no Python 3.8 interpreter here (JetPack 5's Python); install one (pyenv install 3.8) to run this")


def device_venv(tmp_path):
    """A Python 3.8 venv with only the device packages and rrl-edge (no deps): what a JetPack 5 device has."""
    python38 = _python38()
    venv = tmp_path / "py38"
    subprocess.run([python38, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + DEVICE_PACKAGES, check=True, capture_output=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True, capture_output=True)
    return venv


@pytest.mark.slow
def test_run_on_python38_with_numpy_and_onnxruntime_only(tmp_path, exported, proof_pairs):
    venv = device_venv(tmp_path)

    pairs = tmp_path / "pairs.npy"
    np.save(pairs, proof_pairs[:200])
    out = tmp_path / "scores.npy"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(venv / "bin/rrl-edge"), "run", "--engine", str(exported["fp32"]), "--data", str(pairs),
                          "--out", str(out), "--batch", "64"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "onnxruntime fp32, 200 pairs" in run.stdout
    with open_runner(exported["fp32"]) as runner:
        np.testing.assert_allclose(np.load(out), score_pairs(runner, proof_pairs[:200]), atol=1e-5)

    probe = subprocess.run([str(venv / "bin/python"), "-c",
                            "import sys; import rrl_edge.runtime.tensorrt_runner, rrl_edge.manifest; "
                            "print(sys.version_info[:2], 'torch' in sys.modules)"],
                           capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "(3, 8) False"
