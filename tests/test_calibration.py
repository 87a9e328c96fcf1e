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


def test_calibration_reads_the_training_split_only(data_root, visnir_build, visnir_test):
    from rrl_edge.data.build import load_split

    sets, info = load_calibration_sets(data_root / "vis-nir", progress=False)
    train = load_split(visnir_build, "train")
    assert sorted(sets) == sorted(train) == ["country"]
    calib = select_samples(sets, 200, seed=0)
    rows = _rows(calib.pairs)
    assert rows <= _rows(train["country"].patches)
    for ps in visnir_test.values():
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


def test_image_convolutions_and_gates_stay_float(qdq_model, exported):
    """float_nodes: the convolutions reading the image, the 1x1 and 1-D gate convolutions; the 3x3 ones are int8."""
    import onnx

    from rrl_edge.calibration.quantize import float_nodes

    fp32 = onnx.load(str(exported["fp32"]))
    kept = set(float_nodes(fp32))
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    assert len(kept) == 2 + 30 + 20  # image convs; 3 gates x 5 stages x 2 branches; 4 FIL 1x1 x 5 stages
    assert all(n.input[0] in ("vis", "other") or "gate" in n.name or "private" in n.name for n in convs if n.name in kept)
    proto = onnx.load(str(qdq_model))
    producers = {out: node for node in proto.graph.node for out in node.output}
    for node in proto.graph.node:
        if node.op_type == "Conv":  # int8 weights come through a DequantizeLinear, float ones straight
            int8_weights = node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"
            assert int8_weights == (node.name not in kept), node.name


def test_unknown_method(exported, calibration, tmp_path):
    with pytest.raises(ExportError, match="--calib-method 'kl'"):
        quantize(Path(exported["fp32"]), tmp_path / "x.onnx", calibration.pairs, TENSORRT, "kl")
