"""Calibration samples: training split only, balanced over categories and labels, deterministic; INT8 models."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.calibration.quantize import TENSORRT, PairReader, quantize
from rrl_edge.calibration.sampling import load_calibration_sets, select_samples
from rrl_edge.errors import ExportError

pytest_plugins = ("export_fixtures",)


def _rows(pairs: np.ndarray) -> set:
    return {hashlib.sha1(p.tobytes()).hexdigest() for p in pairs}


def test_calibration_reads_the_training_split_only(data_root, visnir_strongest_build, visnir_test):
    """Calibration reads the strongest-first training cut (STRONGEST_CUT): calibrated on the whole-range cut the
    shipped model's logit RMS error was 0.31 and field moved by -0.4 points, on this one 0.15-0.18."""
    from rrl_edge.data.build import load_split

    sets, info = load_calibration_sets(data_root / "vis-nir", progress=False)
    assert info["protocol"]["keypoint_sampling"] == "strongest" and info["protocol"]["keypoints_per_image"] == 600
    train = load_split(visnir_strongest_build, "train")
    assert sorted(sets) == sorted(train) == ["country"]
    calib = select_samples(sets, 200, seed=0)
    rows = _rows(calib.pairs)
    assert rows <= _rows(train["country"].patches)
    for test in (visnir_test, load_split(visnir_strongest_build, "test")):
        for ps in test.values():
            assert not rows & _rows(ps.patches)


def test_samples_are_balanced_over_categories_and_labels(visnir_test):
    calib = select_samples(visnir_test, 100, seed=3)  # 8 categories x 2 labels = 16 groups
    shares = [n for per_label in calib.counts.values() for n in per_label.values()]
    assert sum(shares) == 100 and max(shares) - min(shares) <= 1 and len(shares) == 16
    for cat, per_label in calib.counts.items():
        for label, n in per_label.items():
            picked = [c == cat and lab == int(label) for c, lab in zip(calib.categories, calib.labels)]
            assert sum(picked) == n


def test_samples_are_deterministic_for_a_seed(visnir_test):
    a, b, c = (select_samples(visnir_test, 64, seed=s) for s in (1, 1, 2))
    assert a.sha256 == b.sha256 and np.array_equal(a.pairs, b.pairs)
    assert a.sha256 != c.sha256
    assert a.sha256 == hashlib.sha256(a.npy_bytes()).hexdigest()


def test_fewer_pairs_than_asked(visnir_test):
    with pytest.raises(ExportError, match=r"--calib-samples 1000000: fewer calibration pairs than asked"):
        select_samples(visnir_test, 1_000_000)
    with pytest.raises(ExportError, match="at least one pair per category and label"):
        select_samples(visnir_test, 3)


def test_empty_wrong_or_missing_calibration_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=rf"--calib-data {empty}: .*empty"):
        load_calibration_sets(empty)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("not image pairs")
    with pytest.raises(ExportError, match=rf"--calib-data {wrong}: .*unknown data layout"):
        load_calibration_sets(wrong)
    with pytest.raises(ExportError, match="folder not found"):
        load_calibration_sets(tmp_path / "missing")
    with pytest.raises(ExportError, match="not a folder"):
        load_calibration_sets(wrong / "notes.txt")


def test_reader_batches_cover_every_pair_once(calibration):
    reader = PairReader(calibration.pairs, batch_size=24)
    assert len(reader) == 3 and reader.pass_size() == 3
    seen = 0
    reader.set_range(1, 3)
    while (batch := reader.get_next()) is not None:
        assert batch["vis"].dtype == np.float32 and batch["vis"].max() <= 1.0
        seen += len(batch["vis"])
    assert seen == len(calibration.pairs) - 24


def test_tensorrt_model_keeps_the_score_head_float(qdq_model):
    """A quantized sigmoid would leave ~127 distinct scores: the last Gemm and the Sigmoid read no DQ."""
    import onnx

    from rrl_edge.calibration.quantize import score_head_nodes

    proto = onnx.load(str(qdq_model))
    producers = {out: node for node in proto.graph.node for out in node.output}
    head = score_head_nodes(proto)
    assert [producers["score"].op_type, producers[producers["score"].input[0]].op_type] == ["Sigmoid", "Gemm"]
    for node in proto.graph.node:
        if node.name in head:
            assert all(i not in producers or producers[i].op_type != "DequantizeLinear" for i in node.input)
    ranges = json.loads((qdq_model.parent / "ranges.json").read_text())
    assert ranges["data"] and all("lowest" in r or "highest" in r for r in ranges["data"].values())


def test_image_convolutions_gates_and_head_stay_float(qdq_model, exported):
    """float_nodes: the image convs and the 3x3 convs right after them, the 1x1 and 1-D gate convs, the head's
    Gemms; the other 3x3 convolutions are int8."""
    import onnx

    from rrl_edge.calibration.quantize import float_nodes, second_convs

    fp32 = onnx.load(str(exported["fp32"]))
    kept = set(float_nodes(fp32))
    assert sorted(second_convs(fp32)) == ["/alfe_other/convs.1/convs.1.0/Conv", "/alfe_vis/convs.1/convs.1.0/Conv"]
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in fp32.graph.node if n.op_type == "Gemm"]
    assert len(kept) == 2 + 2 + 30 + 20 + 3  # image convs; second convs; 3 gates x 5 stages x 2; 4 FIL 1x1 x 5; head
    assert set(gemms) <= kept
    assert all(n.input[0] in ("vis", "other") or "gate" in n.name or "private" in n.name or "/convs.1/" in n.name
               for n in convs if n.name in kept)
    proto = onnx.load(str(qdq_model))
    producers = {out: node for node in proto.graph.node for out in node.output}
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm"):  # int8 weights come through a DequantizeLinear, float ones straight
            int8_weights = node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"
            assert int8_weights == (node.name not in kept), node.name


def test_unknown_method(exported, calibration, tmp_path):
    with pytest.raises(ExportError, match="--calib-method 'kl'"):
        quantize(Path(exported["fp32"]), tmp_path / "x.onnx", calibration.pairs, TENSORRT, "kl")


PARITY_CATEGORIES = ("field", "mountain", "water")  # the three with FPR95 above 1%; water is the hardest
PARITY_PAIRS = 2000  # per category: 1000 non-matching pairs, as in the export's proof
MAX_LOGIT_RMS = 0.22  # measured 0.15-0.18 with the defaults, 0.22-0.27 with the old ones (entropy, ALFE 2 and head int8)


@pytest.fixture(scope="module")
def trained_fp32(trained_checkpoint, visnir_strongest_build, tmp_path_factory):
    """The shipped model's simplified FP32 ONNX, its scores and the proof sets of three real categories.

    The FP32 ONNX scores stand in for PyTorch's: the export proves them equal to 1e-4 (test_export_*).
    """
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.export.parity import proof_sets
    from rrl_edge.export.simplify import simplify_onnx

    from rrl_edge.data.build import load_split

    visnir_test = load_split(visnir_strongest_build, "test")  # export --proof-cut strongest (STRONGEST_CUT)
    sets = proof_sets({c: visnir_test[c] for c in PARITY_CATEGORIES}, PARITY_PAIRS, seed=0)
    out = tmp_path_factory.mktemp("trained")
    model, _ = load_model(trained_checkpoint)
    simplify_onnx(export_onnx(model, out / "raw.onnx"), out / "rrl.onnx", sets["water"].patches[:256])
    session = cpu_session(out / "rrl.onnx")
    reference = {c: score_with(session, ps.patches, 256) for c, ps in sets.items()}
    return out / "rrl.onnx", sets, reference


def _logit(scores: np.ndarray) -> np.ndarray:
    s = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_default_calibration_of_the_shipped_model(trained_fp32, visnir_strongest_build, seed, tmp_path):
    """The export's defaults (samples, method, float layers) on the shipped model for two calibration seeds:
    the score error stays below what the old defaults gave, and decisions agree on >= 99% of real pairs.

    Per-category FPR95 within 0.3 points is not asserted: on 1000 non-matching pairs any perturbation of
    this size moves some category by 0.4-0.8 points (benchmarks/int8_study.py noise), whatever the layers
    or calibration; the old defaults moved it by up to 1.1.
    """
    from rrl_edge.calibration.quantize import TENSORRT
    from rrl_edge.data.build import load_split
    from rrl_edge.export.graph_check import check_graph
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.export.parity import int8_parity
    from rrl_edge.export.pipeline import ExportOptions

    import onnx

    fp32, sets, reference = trained_fp32
    defaults = ExportOptions(out_dir=tmp_path)
    calib = select_samples(load_split(visnir_strongest_build, "train", mmap=True), defaults.calib_samples, seed=seed)
    quantize(fp32, tmp_path / "rrl.int8.onnx", calib.pairs, TENSORRT, defaults.calib_method)
    assert check_graph(onnx.load(str(tmp_path / "rrl.int8.onnx"))) == []
    session = cpu_session(tmp_path / "rrl.int8.onnx")
    scores = {c: score_with(session, ps.patches, 256) for c, ps in sets.items()}
    parity = int8_parity({c: ps.labels for c, ps in sets.items()}, reference, scores, defaults.budget)
    rms = float(np.sqrt(np.mean(np.concatenate([(_logit(scores[c]) - _logit(reference[c])) ** 2 for c in sets]))))
    deltas = {c: v["delta"] for c, v in parity["categories"].items()}
    detail = f"seed {seed}: logit RMS error {rms:.3f}, FPR95 deltas {deltas}, agreement {parity['agreement']}"
    assert rms <= MAX_LOGIT_RMS, detail
    assert parity["agreement"] >= 0.99, detail
    assert all(abs(d) <= 1.0 for d in deltas.values()), detail  # a real regression moves FPR95 by points
