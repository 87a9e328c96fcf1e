"""The INT8 proof's rule on the default model and real VIS-NIR test pairs (the cut `rrl-edge eval` scores).

The export's INT8 (TensorRT Q/DQ flavour, calibrated on training pairs) passes `rrl-edge parity`; the same
network with every layer quantized (the layers the export keeps float included) fails it with exit 1, and
the reason names the score-level measure that caught it. The bootstrap's FPR95 is the project's FPR95.
"""

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from rrl_edge.cli import main
from rrl_edge.data.patchfile import PatchSet, save_patch_set

pytest_plugins = ("export_fixtures",)

PER_CATEGORY = 600  # half matching: 4,800 pairs over the eight categories


@pytest.fixture(scope="module")
def default_checkpoint() -> Path:
    from rrl_edge.checkpoint import shipped_checkpoint

    return shipped_checkpoint()


@pytest.fixture(scope="module")
def proof_data(visnir_test: Dict[str, PatchSet], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build-like folder of PER_CATEGORY real test pairs of every category (default cut)."""
    from rrl_edge.data.store import DATA_FORMAT_VERSION, MANIFEST
    from rrl_edge.export.parity import proof_sets

    out = tmp_path_factory.mktemp("proof-data")
    counts = {}
    for name, ps in proof_sets(visnir_test, PER_CATEGORY, seed=3).items():
        save_patch_set(ps, out / f"test_{name}_patches.npy", out / f"test_{name}_labels.npy")
        counts[name] = {"pairs": len(ps), "patches_file": f"test_{name}_patches.npy", "labels_file": f"test_{name}_labels.npy"}
    (out / MANIFEST).write_text(json.dumps({"format_version": DATA_FORMAT_VERSION, "counts": {"test": counts}}))
    return out


@pytest.fixture(scope="module")
def int8_models(default_onnx: Path, calibration, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's export INT8 and its every-layer INT8 (64 calibration pairs each)."""
    import shutil

    from rrl_edge.calibration.quantize import TENSORRT, quantize

    out = tmp_path_factory.mktemp("proof-onnx")
    shutil.copy(default_onnx / "rrl.int8.onnx", out / "export-int8.onnx")
    quantize(default_onnx / "rrl.onnx", out / "every-layer-int8.onnx", calibration.pairs, TENSORRT, "percentile",
             floats=[])
    return out


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_export_int8_passes_and_every_layer_int8_fails(default_checkpoint, int8_models, proof_data, tmp_path, capsys):
    good, broken = int8_models / "export-int8.onnx", int8_models / "every-layer-int8.onnx"
    report_path = tmp_path / "parity.json"
    rc = main(["parity", "--quiet", "--reference", str(default_checkpoint), "--candidate", str(good),
               "--candidate", str(broken), "--data", str(proof_data), "--json", str(report_path), "--threads", "2"])
    out, err = capsys.readouterr()
    assert rc == 1, err
    report = json.loads(report_path.read_text())
    ok, bad = report["candidates"][str(good)], report["candidates"][str(broken)]
    assert ok["passed"] is True and ok["failures"] == [], ok["failures"]
    assert bad["passed"] is False and report["passed"] is False
    assert any(" logit RMS difference " in f for f in bad["failures"]), bad["failures"]
    # the score-level measure separates them by far more than the noise of this subset
    assert bad["worst_logit_rms"] > 2 * ok["worst_logit_rms"] and ok["worst_logit_rms"] <= 0.3
    for c in ok["categories"].values():
        lo, hi = c["delta_ci"]
        assert lo <= c["delta"] <= hi and abs(c["tpr_delta"]) <= 1.0
    assert "export-int8.onnx (onnxruntime, int8): PASS" in out
    assert "every-layer-int8.onnx (onnxruntime, int8): FAIL" in out and "logit RMS difference" in out


def test_bootstrap_fpr95_is_the_project_fpr95_and_a_model_matches_itself(default_checkpoint, proof_data):
    from rrl_edge.data.build import load_split
    from rrl_edge.metrics import fpr95
    from rrl_edge.runtime.fidelity import _weighted_fpr95
    from rrl_edge.runtime.parity import compare
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.checkpoint import load_model

    sets = {n: load_split(proof_data, "test")[n] for n in ("field", "water")}
    model, _ = load_model(default_checkpoint)
    scores = {n: score_with(model, ps.patches, 256) for n, ps in sets.items()}
    for name, ps in sets.items():
        ones = np.ones((1, len(ps)))
        assert _weighted_fpr95(ps.labels, scores[name].astype(np.float64), ones)[0] == pytest.approx(
            fpr95(ps.labels, scores[name]), abs=1e-9)
    labels = {n: ps.labels for n, ps in sets.items()}
    same = compare(labels, scores, scores, 0.3)
    assert same["passed"] and same["logit_rms"] == 0.0 and same["mean_delta_ci"] == [0.0, 0.0]
    for c in same["categories"].values():
        assert c["delta_ci"] == [0.0, 0.0] and c["tpr_delta"] == 0.0 and c["agreement"] == 1.0
    # a perturbation the rule must call beyond noise: every score pushed 1.5 logits towards "no match"
    shifted = {n: (1 / (1 + np.exp(-(np.log(s / (1 - s + 1e-12) + 1e-12) - 1.5)))).astype(np.float32)
               for n, s in scores.items()}
    moved = compare(labels, scores, shifted, 0.3)
    assert not moved["passed"] and any("logit RMS" in f for f in moved["failures"])
