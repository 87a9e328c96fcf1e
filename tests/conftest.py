"""Shared fixtures: the real data under ../shared/data and its patch build (cached across the run)."""

from pathlib import Path

import pytest

from rrl_edge.errors import DataError


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
