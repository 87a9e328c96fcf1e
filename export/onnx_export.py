"""PyTorch -> ONNX for the deployed RRL-Net: two named inputs, one score, a dynamic batch.

Opset 17 is the newest that TensorRT 8.5 (JetPack 5) parses, and TensorRT 8.6 and 10.x parse it too.
The legacy TorchScript exporter is used (``dynamo=False``): it folds BatchNorm into the convolutions
and gives a plain graph of standard ops; the torch.export-based one needs onnxscript and gives a
graph with more shape plumbing for TensorRT to digest.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rrl_edge.atomic import PathLike, atomic_write_bytes
from rrl_edge.contracts import BATCH_DIM, INPUT_NAMES, OPSET, OUTPUT_NAME, PATCH_SIZE
from rrl_edge.models.rrlnet import RRLNet

if TYPE_CHECKING:
    import onnx


def export_onnx(model: RRLNet, path: PathLike) -> "onnx.ModelProto":
    """Export ``model`` (eval mode, CPU) to ``path`` atomically and return the checked graph."""
    import onnx

    model = model.eval().cpu()
    dummy = (torch.rand(2, 1, PATCH_SIZE, PATCH_SIZE), torch.rand(2, 1, PATCH_SIZE, PATCH_SIZE))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, see above
        torch.onnx.export(
            model,
            dummy,
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: BATCH_DIM} for name in (*INPUT_NAMES, OUTPUT_NAME)},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    check_io(proto)
    proto.doc_string = "RRL-Net cross-spectral patch matching: vis, other (batch,1,64,64) in [0,1] -> score (batch,1)"
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return proto


def check_io(proto: "onnx.ModelProto") -> None:
    """onnx's full checker plus the interface every runtime here relies on."""
    import onnx

    onnx.checker.check_model(proto, full_check=True)
    inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outputs = [o.name for o in proto.graph.output]
    if inputs != list(INPUT_NAMES) or outputs != [OUTPUT_NAME]:
        raise AssertionError(f"ONNX interface is {inputs} -> {outputs}, expected {list(INPUT_NAMES)} -> [{OUTPUT_NAME}]")
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != BATCH_DIM:
            raise AssertionError(f"ONNX tensor {value.name} has no dynamic batch dimension")
