"""Static INT8 quantization with ONNX Runtime: a Q/DQ graph for TensorRT and a faster one for the CPU.

Both come from ``onnxruntime.quantization.quantize_static`` on the simplified FP32 graph; they differ in
what their runtime needs:

- ``TENSORRT``: int8 activations and weights, symmetric (every zero point 0), per-channel weight scales
  on axis 0, float weights behind a Q/DQ pair (TensorRT 8.x takes only FP32 weights into a Q/DQ graph),
  float biases (TensorRT's DequantizeLinear reads no int32), one Q/DQ pair per consumer (TensorRT cannot
  share them), and only the inputs of weighted layers (Conv, Gemm) quantized: that is where TensorRT
  runs int8 kernels. The softmax-weighted pooling of the attention gates stays float: its weights are
  ~1/4096 and would round to zero in int8.
- ``CPU``: uint8 activations with reduce_range: on AVX2 without VNNI that is the faster int8 layout, and
  asymmetric uint8 resolves the mostly non-negative activations twice as finely as symmetric int8 (its
  score error is the lower of the two). TensorRT rejects it (uint8, non-zero zero points). It is not
  faster than FP32 at width 0.25 (benchmarks/int8_study.py speed: 0.91-0.94x for every layout tried,
  QDQ or QOperator, u8 or s8, with or without reduce_range; quantizing LeakyRelu and MaxPool too, so
  that ONNX Runtime runs QLinearConv, is slower still, 0.76-0.84x): with 4-64 channels the float NCHWc
  kernels win and the quantize/dequantize steps around the float attention gates cost the rest.

What stays float in both (``float_nodes``), measured on VIS-NIR (benchmarks/int8_study.py): the score
head's last Gemm and Sigmoid (a quantized score has ~127 distinct values, and tied scores wreck FPR95);
the two convolutions that read the image (int8 symmetric keeps 7 of its 8 bits, which alone moved FPR95
by points); the 1x1 and 1-D convolutions of the attention gates and the FIL cross-gating, whose int8
errors are multiplied into every feature; the 3x3 convolution right after each image convolution
(``second_convs``: it reads the first attention stage's long-tailed output, and was the most sensitive
layer: 0.18 logit RMS error on its own, ~40% of the whole model's error variance); and the head's
hidden Gemms (0.08 logit RMS for 0.06% of the multiply-adds). About 10% of the multiply-adds stay float; the other
3x3 convolutions, 90%, run int8.

Activation ranges default (``DEFAULT_METHOD``) to the 99.999th percentile of |x| (``PERCENTILE``): ONNX
Runtime's entropy calibrator works on 128 bins and lands near the maximum anyway, min-max follows single
outliers, and clipping harder (99.99, 99.9) costs accuracy because the attention features' tails carry signal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rrl_edge.errors import ExportError
from rrl_edge.contracts import INPUT_NAMES, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")
DEFAULT_METHOD = "percentile"  # the export's and `--calib-method`'s default (see the module docstring)
CALIBRATION_BATCH = 32
PERCENTILE = 99.999  # of |activation|, for --calib-method percentile
PASS_BATCHES = 4  # batches per calibration pass: ONNX Runtime holds every intermediate tensor of a pass in memory


@dataclass(frozen=True)
class Flavour:
    """How one INT8 model is quantized; ``name`` goes into reports."""

    name: str
    unsigned_activations: bool
    reduce_range: bool
    op_types: Optional[Tuple[str, ...]]  # None: every op type ONNX Runtime quantizes
    extra_options: Tuple[Tuple[str, Any], ...]
    per_channel: bool = True
    quant_format: str = "qdq"  # or "qoperator" (QLinearConv etc.: ONNX Runtime CPU only)


TENSORRT = Flavour(
    name="tensorrt-qdq",
    unsigned_activations=False,
    reduce_range=False,
    op_types=("Conv", "Gemm"),
    extra_options=(
        ("ActivationSymmetric", True),
        ("WeightSymmetric", True),
        ("QuantizeBias", False),
        ("AddQDQPairToWeight", True),
        ("DedicatedQDQPair", True),
        ("QDQKeepRemovableActivations", True),
        # No Q on a Conv/Gemm output: TensorRT fuses DQ -> Conv -> LeakyReLU -> Q into one INT8 kernel;
        # a Q between Conv and LeakyReLU costs an extra kernel and a rounding (NVIDIA/TensorRT#2134). The
        # next quantized layer's input Q (after the activation) is the only one left.
        ("OpTypesToExcludeOutputQuantization", ("Conv", "Gemm")),
    ),
)
CPU = Flavour(
    name="onnxruntime-cpu",
    unsigned_activations=True,
    reduce_range=True,
    op_types=("Conv", "Gemm"),
    extra_options=(("ActivationSymmetric", False), ("WeightSymmetric", True)),
)


class PairReader:
    """Feeds calibration pairs to ONNX Runtime as {vis, other} batches in [0, 1].

    Its length and ranges count batches, so ONNX Runtime's strided calibration can take a few at a time.
    """

    def __init__(self, pairs: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> None:
        self.pairs = pairs
        self.batch_size = batch_size
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._next >= self._end:
            return None
        start = self._next * self.batch_size
        batch = self.pairs[start : start + self.batch_size].astype(np.float32) / np.float32(255.0)
        self._next += 1
        return {INPUT_NAMES[0]: np.ascontiguousarray(batch[:, :1]), INPUT_NAMES[1]: np.ascontiguousarray(batch[:, 1:])}

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def pass_size(self) -> int:
        """Batches per calibration pass: the largest divisor of the batch count up to PASS_BATCHES."""
        return max(d for d in range(1, PASS_BATCHES + 1) if len(self) % d == 0)


def float_nodes(proto: "onnx.ModelProto") -> List[str]:
    """Nodes kept float on top of the score head: ``gate_nodes``, the first 3x3 convolutions after the image
    convolutions (``second_convs``) and every Gemm (the metric head's MLP)."""
    second = set(second_convs(proto))
    extra = [n.name for n in proto.graph.node if n.op_type == "Gemm" or n.name in second]
    return gate_nodes(proto) + extra


def gate_nodes(proto: "onnx.ModelProto") -> List[str]:
    """Convolutions that read a graph input, 1-D convolutions (the attention gates) and 1x1 convolutions
    (the FIL cross-gating): float in every INT8 model this module has made."""
    inputs = {i.name for i in proto.graph.input}
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    keep = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        kernel = shapes.get(node.input[1], [0, 0, 0, 0])[2:]
        if node.input[0] in inputs or len(kernel) == 1 or int(np.prod(kernel)) == 1:
            keep.append(node.name)
    return keep


def second_convs(proto: "onnx.ModelProto") -> List[str]:
    """The 2-D convolutions with a spatial kernel first reached from an image convolution without passing
    another convolution: in RRL-Net the second ALFE convolution of each branch, reading the first attention
    stage's output (a long-tailed activation whose int8 step is coarse for its bulk)."""
    inputs = {i.name for i in proto.graph.input}
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    consumers: Dict[str, List["onnx.NodeProto"]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: List[str] = []
    frontier = [o for n in proto.graph.node if n.op_type == "Conv" and n.input[0] in inputs for o in n.output]
    seen = set(frontier)
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.op_type == "Conv":
                kernel = shapes.get(node.input[1], [0])[2:]
                if len(kernel) == 2 and int(np.prod(kernel)) > 1 and node.name not in found:
                    found.append(node.name)
                continue  # never walk through a convolution
            for out in node.output:
                if out not in seen:
                    seen.add(out)
                    frontier.append(out)
    return found


def rewire_float_inputs(proto: "onnx.ModelProto", names: Sequence[str]) -> int:
    """Let the nodes in ``names`` read the float tensor instead of its Quantize-Dequantize copy.

    ONNX Runtime hands every consumer of a quantized activation the dequantized copy, so a layer kept
    float would still see int8-rounded inputs. Returns how many inputs were rewired; Q/DQ nodes left
    without a consumer are removed.
    """
    producers = {out: node for node in proto.graph.node for out in node.output}
    keep = set(names)
    rewired = 0
    for node in proto.graph.node:
        if node.name not in keep:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    outputs = {o.name for o in proto.graph.output}
    while True:
        used = {i for node in proto.graph.node for i in node.input} | outputs
        dead = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            proto.graph.node.remove(node)
    return rewired


def score_head_nodes(proto: "onnx.ModelProto") -> List[str]:
    """Names of the node that produces the score and of the node feeding it (Sigmoid and the last Gemm)."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    last = producers.get(OUTPUT_NAME)
    if last is None:
        raise ExportError(f"the ONNX graph has no node producing {OUTPUT_NAME!r}")
    names = [last.name]
    feeder = producers.get(last.input[0])
    if feeder is not None:
        names.append(feeder.name)
    return names


def quantizable_nodes(proto: "onnx.ModelProto", flavour: Flavour, floats: Optional[Sequence[str]] = None) -> List[str]:
    """Names of the nodes ``flavour`` quantizes: its op types minus the score head and ``floats``
    (default ``float_nodes``)."""
    kept = set(score_head_nodes(proto)) | set(float_nodes(proto) if floats is None else floats)
    return [n.name for n in proto.graph.node
            if (flavour.op_types is None or n.op_type in flavour.op_types) and n.name not in kept]


def quantize(
    fp32_path: Path,
    out_path: Path,
    pairs: np.ndarray,
    flavour: Flavour,
    method: str = DEFAULT_METHOD,
    ranges_path: Optional[Path] = None,
    exclude: Sequence[str] = (),
    reuse_ranges: bool = False,
    percentile: float = PERCENTILE,
    floats: Optional[Sequence[str]] = None,
) -> None:
    """Calibrate on ``pairs`` (uint8 (N, 2, 64, 64)) and write the INT8 model; ranges go to ``ranges_path`` (JSON).

    Nodes named in ``exclude`` stay float too, on top of the score head and ``floats`` (default
    ``float_nodes``; studies pass ``gate_nodes`` to measure the layers ``float_nodes`` adds). With
    ``reuse_ranges`` an existing ``ranges_path`` is read instead of calibrating (studies that quantize one
    calibration many ways); the export always calibrates afresh.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ExportError(f"--calib-method {method!r}: expected one of {', '.join(METHODS)}")
    calibrate_method = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    if ranges_path is not None and not reuse_ranges:
        ranges_path.unlink(missing_ok=True)  # ONNX Runtime would otherwise reuse stale ranges from it
    with tempfile.TemporaryDirectory(prefix="rrl-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference + folding: what quantize_static expects
        graph = onnx.load(str(prepared))
        kept = float_nodes(graph) if floats is None else list(floats)
        excluded = score_head_nodes(graph) + kept + list(exclude)
        options: Dict[str, Any] = dict(flavour.extra_options)
        reader = PairReader(pairs)
        options["CalibStridedMinMax"] = reader.pass_size()
        if method == "percentile":
            options["CalibPercentile"] = percentile
        activation = QuantType.QUInt8 if flavour.unsigned_activations else QuantType.QInt8
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter):  # the calibrators print their progress
            quantize_static(
                str(prepared),
                str(out_path),
                reader,
                quant_format=QuantFormat.QOperator if flavour.quant_format == "qoperator" else QuantFormat.QDQ,
                op_types_to_quantize=list(flavour.op_types) if flavour.op_types else None,
                per_channel=flavour.per_channel,
                reduce_range=flavour.reduce_range,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=calibrate_method,
                extra_options=options,
                calibration_cache_path=str(ranges_path) if ranges_path is not None else None,
            )
        quantized = onnx.load(str(out_path))
        if rewire_float_inputs(quantized, excluded):
            onnx.save(quantized, str(out_path))
    log.debug("ONNX Runtime calibration output:\n%s", chatter.getvalue())
    log.info("quantized %s -> %s (%s, %s calibration on %d pairs)", fp32_path, out_path, flavour.name, method, len(pairs))
