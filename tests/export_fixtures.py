"""Fixtures shared by the export, calibration and graph-check tests (imported by those modules)."""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from rrl_edge.data.patchfile import PatchSet


def write_test_build(sets: Dict[str, PatchSet], out: Path) -> Path:
    """A build-like folder (manifest + labelled patch files, test split) of ``sets``: what `run` and `parity` read
    as a patch build."""
    import json

    from rrl_edge.data.patchfile import save_patch_set
    from rrl_edge.data.store import DATA_FORMAT_VERSION, MANIFEST

    counts = {}
    for name, ps in sets.items():
        save_patch_set(ps, out / f"test_{name}_patches.npy", out / f"test_{name}_labels.npy")
        counts[name] = {"pairs": len(ps), "patches_file": f"test_{name}_patches.npy", "labels_file": f"test_{name}_labels.npy"}
    (out / MANIFEST).write_text(json.dumps({"format_version": DATA_FORMAT_VERSION, "counts": {"test": counts}}))
    return out


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained width-0.25 model: enough for graph structure and FP32 parity."""
    import torch

    from rrl_edge.checkpoint import save_checkpoint
    from rrl_edge.models.rrlnet import build_rrlnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(path, build_rrlnet(0.25))
    return path


@pytest.fixture(scope="session")
def trained_checkpoint() -> Path:
    """The shipped VIS-NIR model (else a local training run's best.pt): INT8 parity needs a trained network."""
    from rrl_edge.checkpoint import SHIPPED

    for path in (SHIPPED["vis-nir"], Path(__file__).resolve().parents[1] / "runs" / "visnir" / "best.pt"):
        if path.is_file():
            return path
    pytest.skip(f"no trained VIS-NIR model: neither the shipped {SHIPPED['vis-nir']} nor runs/visnir/best.pt")


@pytest.fixture(scope="session")
def proof_pairs(visnir_test: Dict[str, PatchSet]) -> np.ndarray:
    """1024 real test pairs: 128 from each VIS-NIR test category, half matching."""
    from rrl_edge.export.parity import proof_sets

    sets = proof_sets(visnir_test, 128, seed=0)
    return np.concatenate([ps.patches for ps in sets.values()])


@pytest.fixture(scope="session")
def exported(random_checkpoint: Path, proof_pairs: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """The raw and simplified FP32 ONNX of the random model (one export per test session)."""
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx

    out = tmp_path_factory.mktemp("onnx")
    model, _ = load_model(random_checkpoint)
    raw = export_onnx(model, out / "raw.onnx")
    info = simplify_onnx(raw, out / "rrl.onnx", proof_pairs[:256])
    return {"model": model, "raw": out / "raw.onnx", "fp32": out / "rrl.onnx", "simplify": info}


@pytest.fixture(scope="session")
def calibration(visnir_build: Path):
    """64 calibration pairs from the VIS-NIR training split."""
    from rrl_edge.calibration.sampling import select_samples
    from rrl_edge.data.build import load_split

    return select_samples(load_split(visnir_build, "train", mmap=True), 64, seed=0)


@pytest.fixture(scope="session")
def qdq_model(exported: Dict[str, object], calibration, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TensorRT Q/DQ model of the random network, calibrated on 64 training pairs."""
    from rrl_edge.calibration.quantize import TENSORRT, quantize

    out = tmp_path_factory.mktemp("qdq")
    quantize(Path(exported["fp32"]), out / "rrl.int8.onnx", calibration.pairs, TENSORRT, "minmax", out / "ranges.json")
    return out / "rrl.int8.onnx"


@pytest.fixture(scope="session")
def default_onnx(calibration, visnir_test: Dict[str, PatchSet], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default shipped model's simplified FP32 ONNX (rrl.onnx) and its export-recipe INT8 (rrl.int8.onnx,
    TensorRT Q/DQ flavour, 64 calibration pairs), in one folder."""
    from rrl_edge.calibration.quantize import TENSORRT, quantize
    from rrl_edge.checkpoint import load_model, shipped_checkpoint
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx

    out = tmp_path_factory.mktemp("default-onnx")
    model, _ = load_model(shipped_checkpoint())
    simplify_onnx(export_onnx(model, out / "raw.onnx"), out / "rrl.onnx", visnir_test["field"].patches[:64])
    quantize(out / "rrl.onnx", out / "rrl.int8.onnx", calibration.pairs, TENSORRT, "percentile")
    return out
