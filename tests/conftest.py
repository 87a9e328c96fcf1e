"""Shared fixtures: the real data under ../shared/data and its patch build (cached across the run).

On a device (numpy, TensorRT, pycuda and pytest: what scripts/setup_device.sh installs; no torch) only the test
modules written for one are collected, so `pytest -m gpu` runs there instead of stopping on the workstation
modules' imports (torch, OpenCV, onnx). tests/test_device_python.py runs that collection in a Python 3.8 venv.
"""

import importlib.util
from pathlib import Path

import pytest

from rrl_edge.errors import DataError

# Test modules that import nothing a Jetson lacks (tests/test_runtime_tensorrt.py checks their imports).
DEVICE_TESTS = ("test_runtime_tensorrt.py", "test_tensorrt_build.py", "test_inspector.py")
ON_DEVICE = importlib.util.find_spec("torch") is None  # the workstation extras all come with torch

collect_ignore = ([p.name for p in Path(__file__).parent.glob("test_*.py") if p.name not in DEVICE_TESTS]
                  if ON_DEVICE else [])


def pytest_report_header(config) -> str:
    if ON_DEVICE:
        return f"device side (no torch here): collecting {', '.join(DEVICE_TESTS)} only"
    return "workstation: every test module"


@pytest.fixture(scope="session")
def data_root() -> Path:
    from rrl_edge.data.build import default_data_root

    try:
        return default_data_root()
    except DataError as exc:
        pytest.skip(f"real data not found ({exc}); set RRL_EDGE_DATA to the folder holding vis-nir/ and roadscene/")


@pytest.fixture(scope="session")
def visnir_build(data_root: Path) -> Path:
    """The default VIS-NIR patch build: the same one `rrl-edge eval` and `train` use."""
    from rrl_edge.data.build import PatchConfig, ensure_dataset

    return ensure_dataset(data_root / "vis-nir", PatchConfig(), progress=False)


@pytest.fixture(scope="session")
def visnir_test(visnir_build: Path):
    from rrl_edge.data.build import load_split

    return load_split(visnir_build, "test")


@pytest.fixture(scope="session")
def visnir_strongest_build(data_root: Path) -> Path:
    """The strongest-first VIS-NIR cut (``STRONGEST_CUT``): what INT8 calibration reads, and what the
    single-dataset models were trained and first measured on."""
    from rrl_edge.data.build import STRONGEST_CUT, ensure_dataset

    return ensure_dataset(data_root / "vis-nir", STRONGEST_CUT, progress=False)
