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


# ---- the fusion rules (check_fusion): a small graph that breaks each one, and one that keeps them ----

def _q(name, src, scale=0.1):
    return [helper.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=f"{name}_Q"),
            helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"], name=f"{name}_DQ")], [
        numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0, np.int8), f"{name}_z")]


def _graph(nodes, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])


def _conv_graph(q_on_output: bool, quantize_weight: bool = True):
    nodes, inits = _q("a", "x")
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    inits.append(w)
    weight = "w"
    if quantize_weight:
        wn, wi = _q("w", "w")
        nodes += wn
        inits += wi
        weight = "w_dq"
    nodes.append(helper.make_node("Conv", ["a_dq", weight], ["c"], name="conv", pads=[1, 1, 1, 1]))
    act_in = "c"
    if q_on_output:
        on, oi = _q("o", "c")
        nodes += on
        inits += oi
        act_in = "o_dq"
    nodes.append(helper.make_node("LeakyRelu", [act_in], ["y"], name="act", alpha=0.1))
    return _graph(nodes, inits)


def test_fusion_check_accepts_dq_conv_activation():
    from rrl_edge.export.graph_check import check_fusion

    assert check_fusion(_conv_graph(q_on_output=False)) == []


def test_fusion_check_names_a_q_between_conv_and_activation():
    from rrl_edge.export.graph_check import check_fusion

    problems = check_fusion(_conv_graph(q_on_output=True))
    assert len(problems) == 1 and "Conv conv" in problems[0] and "before its activation" in problems[0]


def test_fusion_check_names_a_conv_with_a_float_weight():
    from rrl_edge.export.graph_check import check_fusion

    problems = check_fusion(_conv_graph(q_on_output=False, quantize_weight=False))
    assert len(problems) == 1 and "Conv conv" in problems[0] and "only its input is quantized" in problems[0]


@pytest.mark.parametrize("scales,mixed,expected", [((0.1, 0.1), False, None), ((0.1, 0.2), False, "different scales"),
                                                   ((0.1, 0.1), True, "1 of its 2 inputs")])
def test_fusion_check_concat_inputs_share_one_scale_or_stay_float(scales, mixed, expected):
    from rrl_edge.export.graph_check import check_fusion

    na, ia = _q("a", "x", scales[0])
    nb, ib = _q("b", "x", scales[1])
    second = "x" if mixed else "b_dq"
    nodes = na + nb + [helper.make_node("Concat", ["a_dq", second], ["y"], name="cat", axis=1)]
    problems = check_fusion(_graph(nodes, ia + ib))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and "Concat cat" in problems[0] and expected in problems[0]


def test_fusion_check_names_a_maxpool_left_between_reformats():
    from rrl_edge.export.graph_check import check_fusion

    na, ia = _q("a", "x")
    nodes = na + [helper.make_node("MaxPool", ["a_dq"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    problems = check_fusion(_graph(nodes, ia))
    assert len(problems) == 1 and "MaxPool pool" in problems[0]
    nodes2 = na + [helper.make_node("MaxPool", ["a_dq"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    nodes2 += [n for n in _q("b", "p")[0]] + [helper.make_node("Identity", ["b_dq"], ["y"], name="id")]
    assert check_fusion(_graph(nodes2, ia + _q("b", "p")[1])) == []


def test_the_exported_qdq_graph_keeps_every_fusion_rule(qdq_model):
    """The TensorRT-flavour model of calibration/quantize.py: no Q on a Conv output (16 of 48 Q nodes were
    there before), every quantized Conv reads DQ(input) and DQ(weight)."""
    from rrl_edge.export.graph_check import check_fusion

    proto = _load(Path(qdq_model))
    assert check_fusion(proto) == []
    producers = {o: n for n in proto.graph.node for o in n.output}
    qs = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and not [q for q in qs if producers.get(q.input[0]) is not None
                       and producers[q.input[0]].op_type in ("Conv", "Gemm")]
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and producers.get(n.input[0]) is not None
             and producers[n.input[0]].op_type == "DequantizeLinear"]
    assert len(convs) >= 8  # the 3x3 convolutions that run INT8
