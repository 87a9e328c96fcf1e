"""The GPU-free TensorRT check: supported ops and the Q/DQ rules, and that it catches violations."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rrl_edge.errors import ExportError
from rrl_edge.export.graph_check import TENSORRT_OPS, check_graph, require_tensorrt_compatible

pytest_plugins = ("export_fixtures",)


def _load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def _first(proto: onnx.ModelProto, op_type: str, weight: bool = False) -> onnx.NodeProto:
    inits = {t.name for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == op_type and (not weight or node.input[0] in inits):
            return node
    raise AssertionError(f"no {op_type}")


def _set_initializer(proto: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    for i, t in enumerate(proto.graph.initializer):
        if t.name == name:
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise AssertionError(name)


def test_op_list_covers_the_rrlnet_graph_and_excludes_what_tensorrt_lacks():
    for op in ("Conv", "Gemm", "MatMul", "Softmax", "Sigmoid", "LeakyRelu", "ReduceMean", "QuantizeLinear", "DequantizeLinear"):
        assert op in TENSORRT_OPS
    for op in ("Hardmax", "Unique", "MatMulInteger", "QLinearConv", "ConvInteger", "DynamicQuantizeLinear"):
        assert op not in TENSORRT_OPS  # "N" in TensorRT 8.5 or 10.x


def test_fp32_and_qdq_graphs_pass(exported, qdq_model):
    assert check_graph(_load(exported["fp32"])) == []
    assert check_graph(_load(exported["raw"])) == []
    qdq = _load(qdq_model)
    assert check_graph(qdq) == []
    ops = {n.op_type for n in qdq.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_qdq_rules_hold_explicitly(qdq_model):
    proto = _load(qdq_model)
    inits = {t.name: t for t in proto.graph.initializer}
    quantized_weights = {n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits}
    weights = 0
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = inits[node.input[2]]
        assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any()
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:  # a weight: per-channel on axis 0
            weights += 1
            scale = numpy_helper.to_array(inits[node.input[1]])
            assert scale.shape == (inits[node.input[0]].dims[0],)
            assert next(a.i for a in node.attribute if a.name == "axis") == 0
        elif node.input[0] not in quantized_weights:
            assert numpy_helper.to_array(inits[node.input[1]]).size == 1  # activations per-tensor
    assert weights > 0


def test_cpu_flavour_is_refused(exported, calibration, tmp_path):
    """The uint8 CPU model is exactly what TensorRT must not get: the check says why."""
    from rrl_edge.calibration.quantize import CPU, quantize

    quantize(Path(exported["fp32"]), tmp_path / "cpu.onnx", calibration.pairs, CPU, "minmax")
    problems = check_graph(_load(tmp_path / "cpu.onnx"))
    assert any("UINT8" in p and "int8" in p for p in problems)
    assert any("not 0" in p or "UINT8" in p for p in problems)


def test_catches_nonzero_zero_point(qdq_model):
    proto = _load(qdq_model)
    node = _first(proto, "QuantizeLinear")
    _set_initializer(proto, node.input[2], np.array(3, dtype=np.int8))
    problems = check_graph(proto)
    assert any(node.name in p and "zero point is not 0" in p for p in problems)
    with pytest.raises(ExportError, match="zero point is not 0"):
        require_tensorrt_compatible(proto, "doctored")


def test_catches_unsupported_and_foreign_ops(exported):
    proto = _load(exported["fp32"])
    relu = _first(proto, "LeakyRelu")
    relu.op_type = "Hardmax"
    other = _first(proto, "Sigmoid")
    other.domain = "com.microsoft"
    problems = check_graph(proto)
    assert any("op Hardmax" in p for p in problems)
    assert any("com.microsoft::Sigmoid" in p for p in problems)


def test_catches_per_channel_axis_and_activation_scales(qdq_model):
    proto = _load(qdq_model)
    weight_q = _first(proto, "QuantizeLinear", weight=True)
    for attr in weight_q.attribute:
        if attr.name == "axis":
            attr.i = 1
    inits = {t.name for t in proto.graph.initializer}
    act_q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    _set_initializer(proto, act_q.input[1], np.array([0.01, 0.02], dtype=np.float32))
    problems = check_graph(proto)
    assert any(weight_q.name in p and "axis 1" in p for p in problems)
    assert any(act_q.name in p and "activation" in p for p in problems)


def test_catches_quantized_score_int32_bias_and_new_opset(qdq_model):
    proto = _load(qdq_model)
    sigmoid = next(n for n in proto.graph.node if "score" in n.output)
    scale = numpy_helper.from_array(np.array(0.01, np.float32), "s_scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "s_zero")
    proto.graph.initializer.extend([scale, zero])
    source = sigmoid.input[0]
    proto.graph.node.extend([
        helper.make_node("QuantizeLinear", [source, "s_scale", "s_zero"], ["s_q"], name="score_q"),
        helper.make_node("DequantizeLinear", ["s_q", "s_scale", "s_zero"], ["s_dq"], name="score_dq"),
    ])
    sigmoid.input[0] = "s_dq"
    bias = numpy_helper.from_array(np.zeros(4, np.int32), "b_int32")
    proto.graph.initializer.extend([bias, numpy_helper.from_array(np.ones(4, np.float32), "b_scale"),
                                    numpy_helper.from_array(np.zeros(4, np.int32), "b_zero")])
    proto.graph.node.extend([helper.make_node("DequantizeLinear", ["b_int32", "b_scale", "b_zero"], ["b"], name="bias_dq")])
    proto.opset_import[0].version = 19
    problems = check_graph(proto)
    assert any("score head must stay float" in p for p in problems)
    assert any("bias_dq" in p and "INT32" in p for p in problems)
    assert any("opset 19" in p for p in problems)
