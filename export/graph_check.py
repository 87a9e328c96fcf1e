"""Will TensorRT take this graph? A check that needs no GPU and no TensorRT.

Two parts:

- every op is one that TensorRT's ONNX parser supports both in TensorRT 8.5/8.6 (JetPack 5, opset <= 17)
  and in TensorRT 10.x. The list is the intersection of onnx-tensorrt's ``docs/operators.md`` for 8.5-GA
  (8.6 supports a superset) and for 10.x (10.15): every op marked "Y" in both, default ONNX domain only;
- the Q/DQ rules of TensorRT's explicit quantization: int8 only, symmetric (every zero point an int8
  zero), scales positive and finite, activations per-tensor, weights per-channel on axis 0 and given in
  FP32 behind a QuantizeLinear (TensorRT 8.x reads no pre-quantized weights), and the score itself left
  float (its Sigmoid does not read a DequantizeLinear);
- the fusion rules of TensorRT's Q/DQ placement (Developer Guide, "Q/DQ Layer-Placement Recommendations";
  NVIDIA/TensorRT#2134, #4366), ``check_fusion``: a quantized Conv/Gemm reads DQ(input) and DQ(weight), and
  its output is not quantized before its activation (DQ -> Conv -> LeakyReLU -> Q fuses Conv + activation
  into one INT8 kernel; Conv -> Q -> DQ -> LeakyReLU costs an extra kernel and a rounding); a Concat's inputs
  share one scale or all stay float (mixed or unequal scales make TensorRT requantize each input); a MaxPool
  reading a DQ is followed by a Q of the same scale (else TensorRT runs it in float between two reformats).
  Each break is named with its node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from rrl_edge.errors import ExportError
from rrl_edge.contracts import INPUT_NAMES, OPSET, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx

# Supported ("Y") in onnx-tensorrt docs/operators.md of both TensorRT 8.5-GA and 10.15.
TENSORRT_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
    Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
    Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish
    Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN
    LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg
    NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal
    RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
    Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
    Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def has_qdq(proto: "onnx.ModelProto") -> bool:
    return any(node.op_type in QDQ_OPS for node in proto.graph.node)


def check_graph(proto: "onnx.ModelProto") -> List[str]:
    """Every reason TensorRT 8.5-10.x would refuse ``proto`` or break its Q/DQ rules; empty when none."""
    problems = _check_opset_and_ops(proto)
    if has_qdq(proto):
        problems += _check_qdq(proto) + check_fusion(proto)
    return problems


def require_tensorrt_compatible(proto: "onnx.ModelProto", what: str) -> None:
    problems = check_graph(proto)
    if problems:
        listed = "\n  - ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ExportError(f"{what} is not a graph TensorRT 8.5-10.x accepts:\n  - {listed}")


def _check_opset_and_ops(proto: "onnx.ModelProto") -> List[str]:
    problems: List[str] = []
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > OPSET:
            problems.append(f"opset {entry.version}: TensorRT 8.5 parses opsets up to {OPSET}")
    unsupported: Dict[str, List[str]] = {}
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            unsupported.setdefault(f"{node.domain}::{node.op_type}", []).append(node.name)
        elif node.op_type not in TENSORRT_OPS:
            unsupported.setdefault(node.op_type, []).append(node.name)
    for op, names in sorted(unsupported.items()):
        problems.append(f"op {op} (node {names[0]}{f' and {len(names) - 1} more' if len(names) > 1 else ''}) "
                        "is not supported by TensorRT's ONNX parser in both 8.5/8.6 and 10.x")
    return problems


def _check_qdq(proto: "onnx.ModelProto") -> List[str]:
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    producers = {out: node for node in proto.graph.node for out in node.output}
    problems: List[str] = []

    def array(name: str) -> Optional[np.ndarray]:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    for node in proto.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        where = f"{node.op_type} {node.name}"
        scale = array(node.input[1]) if len(node.input) > 1 else None
        zero = array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            problems.append(f"{where}: scale is not a constant initializer")
            continue
        if scale.dtype != np.float32 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{where}: scales must be positive finite float32")
        if zero is None:
            problems.append(f"{where}: no int8 zero point (a missing zero point means uint8)")
        elif inits[node.input[2]].data_type != TensorProto.INT8:
            problems.append(f"{where}: zero point is {TensorProto.DataType.Name(inits[node.input[2]].data_type)}, "
                            "TensorRT needs int8")
        elif np.any(zero != 0):
            problems.append(f"{where}: zero point is not 0 (TensorRT quantization is symmetric)")
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        source = node.input[0]
        weight = _weight_dims(source, node, inits, producers)
        if weight is None and scale.size > 1:
            problems.append(f"{where}: per-channel scales on an activation (TensorRT: activations per-tensor)")
        elif weight is not None:
            if scale.ndim != 1 or scale.size != weight[0]:
                problems.append(f"{where}: weight scales of shape {scale.shape}, TensorRT needs one per output "
                                f"channel ({weight[0]},) on axis 0")
            elif axis % len(weight) != 0:
                problems.append(f"{where}: per-channel axis {axis}, TensorRT needs weights quantized on axis 0")
        if node.op_type == "DequantizeLinear" and source in inits:
            problems.append(f"{where}: reads pre-quantized {TensorProto.DataType.Name(inits[source].data_type)} "
                            "weights; TensorRT 8.x needs FP32 weights behind a QuantizeLinear")
    sigmoid = producers.get(OUTPUT_NAME)
    if sigmoid is None or sigmoid.op_type in QDQ_OPS:
        problems.append(f"the score {OUTPUT_NAME!r} is produced by a Q/DQ op: it must stay float")
    elif any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in sigmoid.input):
        problems.append(f"the score's {sigmoid.op_type} reads a DequantizeLinear: the score head must stay float")
    for name in INPUT_NAMES:
        if name not in {i.name for i in proto.graph.input}:
            problems.append(f"input {name!r} is missing")
    return problems


def _weight_dims(
    source: str, node: "onnx.NodeProto", inits: Dict[str, "onnx.TensorProto"], producers: Dict[str, "onnx.NodeProto"]
) -> Optional[List[int]]:
    """Dims of the weight a Q/DQ node quantizes (directly, or through the QuantizeLinear of a weight); else None."""
    if source in inits:
        return list(inits[source].dims) or [1]
    feeder = producers.get(source)
    if node.op_type == "DequantizeLinear" and feeder is not None and feeder.op_type == "QuantizeLinear":
        if feeder.input[0] in inits:
            return list(inits[feeder.input[0]].dims) or [1]
    return None


ACTIVATIONS = ("LeakyRelu", "Relu", "Sigmoid", "Tanh", "Clip", "Elu", "HardSigmoid", "Softplus", "PRelu")


def check_fusion(proto: "onnx.ModelProto") -> List[str]:
    """Every place where TensorRT would not fuse the Q/DQ graph the way its explicit-quantization rules ask."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    producers = {out: node for node in proto.graph.node for out in node.output}
    consumers: Dict[str, List["onnx.NodeProto"]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def dq(tensor: str) -> Optional["onnx.NodeProto"]:
        node = producers.get(tensor)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def scale_of(node: "onnx.NodeProto") -> Optional[np.ndarray]:
        return numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None

    problems: List[str] = []
    for node in proto.graph.node:
        where = f"{node.op_type} {node.name}"
        if node.op_type in ("Conv", "Gemm"):
            data, weight = dq(node.input[0]), dq(node.input[1]) if len(node.input) > 1 else None
            if (data is None) != (weight is None):
                which = "input" if data is not None else "weight"
                problems.append(f"{where}: only its {which} is quantized; an INT8 {node.op_type} reads DQ(input) "
                                "and DQ(weight), so TensorRT runs it in float between reformats")
            for q in consumers.get(node.output[0], []):
                if q.op_type != "QuantizeLinear":
                    continue
                after = [c.op_type for d in consumers.get(q.output[0], []) for c in consumers.get(d.output[0], [])]
                if any(op in ACTIVATIONS for op in after):
                    problems.append(f"{where}: its output is quantized ({q.name}) before its activation "
                                    f"({', '.join(sorted(set(after)))}); TensorRT fuses DQ -> {node.op_type} -> "
                                    "activation -> Q, so this costs an extra kernel and a rounding")
        elif node.op_type == "Concat":
            readers = [dq(name) for name in node.input]
            quantized = [r for r in readers if r is not None]
            if quantized and len(quantized) != len(readers):
                problems.append(f"{where}: {len(quantized)} of its {len(readers)} inputs are dequantized, the rest "
                                "float; Concat inputs share one scale or all stay float")
            elif quantized:
                scales = [scale_of(r) for r in quantized]
                if any(s is None or s.shape != scales[0].shape or not np.allclose(s, scales[0])  # type: ignore[union-attr]
                       for s in scales):
                    problems.append(f"{where}: its inputs are quantized with different scales; TensorRT requantizes "
                                    "each one (Concat inputs share one scale or stay float)")
        elif node.op_type == "MaxPool" and dq(node.input[0]) is not None:
            source = dq(node.input[0])
            after = [c for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"]
            if not after or source is None or any(
                    c.input[1] not in inits or source.input[1] not in inits
                    or not np.allclose(scale_of(c), scale_of(source)) for c in after):  # type: ignore[arg-type]
                problems.append(f"{where}: reads a DequantizeLinear but is not followed by a Q of the same scale; "
                                "TensorRT runs it in float between reformats")
    return problems
