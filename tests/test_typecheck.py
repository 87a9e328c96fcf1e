"""The TensorRT build code type-checks against tensorrt-stubs (scripts/typecheck.sh, as in CI)."""

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
