"""ONNX export: the interface, FP32 parity with PyTorch on real pairs, and simplification."""

import logging

import numpy as np
import onnx
import pytest

from rrl_edge.contracts import INPUT_NAMES, OPSET, OUTPUT_NAME, PATCH_SIZE
from rrl_edge.runtime.onnxruntime_runner import cpu_session
from rrl_edge.runtime.registry import score_with
from rrl_edge.models.rrlnet import PATCH_SIZE as MODEL_PATCH_SIZE

pytest_plugins = ("export_fixtures",)


def test_interface_matches_the_model():
    assert PATCH_SIZE == MODEL_PATCH_SIZE


def test_exported_interface_and_dynamic_batch(exported):
    proto = onnx.load(str(exported["fp32"]))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == OPSET
    session = cpu_session(exported["fp32"])
    for batch in (1, 7, 64):
        x = np.random.default_rng(batch).random((batch, 1, PATCH_SIZE, PATCH_SIZE), dtype=np.float32)
        (out,) = session.run(None, {"vis": x, "other": x[::-1].copy()})
        assert out.shape == (batch, 1)


def test_fp32_onnx_matches_pytorch_on_real_pairs(exported, proof_pairs):
    assert len(proof_pairs) >= 1000
    torch_scores = score_with(exported["model"], proof_pairs, 256)
    for path in (exported["raw"], exported["fp32"]):
        onnx_scores = score_with(cpu_session(path), proof_pairs, 256)
        assert np.max(np.abs(onnx_scores - torch_scores)) <= 1e-4


def test_simplified_graph_is_smaller_and_scores_the_same(exported, proof_pairs):
    info = exported["simplify"]
    assert info["tool"] == "onnxsim"
    assert info["nodes_after"] <= info["nodes_before"]
    raw = score_with(cpu_session(exported["raw"]), proof_pairs, 256)
    simplified = score_with(cpu_session(exported["fp32"]), proof_pairs, 256)
    assert np.max(np.abs(raw - simplified)) <= 1e-6
    keys = [p.key for p in onnx.load(str(exported["fp32"])).metadata_props]
    assert not any(k.startswith("onnxsim.") for k in keys)


def test_onnxslim_steps_in_when_onnxsim_fails(exported, proof_pairs, tmp_path, monkeypatch, caplog):
    from rrl_edge.export import simplify

    def broken(proto):
        raise RuntimeError("simulated onnxsim failure")

    monkeypatch.setattr(simplify, "_onnxsim", broken)
    with caplog.at_level(logging.WARNING):
        info = simplify.simplify_onnx(onnx.load(str(exported["raw"])), tmp_path / "slim.onnx", proof_pairs[:128])
    assert info["tool"] == "onnxslim"
    assert info["nodes_after"] <= info["nodes_before"]
    assert "onnxsim failed" in caplog.text and "onnxslim" in caplog.text


def test_onnx_scoring_rejects_bad_pairs(exported):
    from rrl_edge.errors import InputError

    with pytest.raises(InputError, match="shape"):
        score_with(cpu_session(exported["fp32"]), np.zeros((4, 1, 64, 64), np.uint8))
