"""Quantization-aware fine-tuning that simulates the export's Q/DQ graph exactly, read from the graph itself.

Post-training quantization rounds a network that never saw rounding. Here the deployed network trains for a
few hundred steps with the rounding of ``rrl.int8.onnx`` in its forward pass:

- which convolutions are INT8, and the scale of each one's input, come from that file's QuantizeLinear
  nodes (ONNX node ``/alfe_vis/convs.2/convs.2.0/Conv`` is module ``alfe_vis.convs.2.0``); every other layer
  stays float, as in the export;
- activations: per-tensor symmetric int8, zero point 0, clamped to [-128, 127] as QuantizeLinear does;
- weights: per output channel, symmetric, [-127, 127], scale max|w| / 127, as ONNX Runtime quantizes them.
  The export quantizes the weights with BatchNorm folded in; a per-channel scale takes the fold's per-channel
  factor along, so rounding the raw weights per channel rounds the folded ones identically (BatchNorm's
  statistics stay frozen here for that reason).

Gradients pass the rounding straight through (torch's fake-quantize ops). The loss is the match BCE plus the
squared logit difference to the starting model (a teacher), so FP32 accuracy stays where it was. The result
is an ordinary checkpoint: `rrl-edge export --int8` calibrates and proves it like any other.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from rrl_edge.checkpoint import load_model, save_checkpoint
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.errors import ExportError
from rrl_edge.training.config import QATConfig  # its defaults are the `rrl-edge qat` flags'

ACT_QMIN, ACT_QMAX = -128, 127  # QuantizeLinear to int8 saturates here
WEIGHT_QMAX = 127  # ONNX Runtime's symmetric int8 weights use [-127, 127]


def module_name(onnx_node: str) -> str:
    """``/fil/stages.0/convs/convs.0/convs.0.0/Conv`` -> ``fil.stages.0.convs.0.0``: torch's exporter names a
    node by its module scopes, each scope repeating the one before it when they are nested containers."""
    parts: List[str] = []
    for seg in onnx_node.strip("/").split("/")[:-1]:
        if parts and seg.startswith(parts[-1] + ".") or parts and seg == parts[-1]:
            parts[-1] = seg
        else:
            parts.append(seg)
    return ".".join(parts)


@dataclass(frozen=True)
class QuantizedConv:
    """One INT8 convolution of the Q/DQ model: its input's scale and its weight's output channels."""

    input_scale: float
    out_channels: int


def quantized_inputs(int8_onnx: Path) -> Dict[str, QuantizedConv]:
    """{module name: QuantizedConv} of every Conv whose input is dequantized in the Q/DQ model."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(int8_onnx))
    producers = {o: n for n in proto.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    out: Dict[str, QuantizedConv] = {}
    for node in proto.graph.node:
        dq = producers.get(node.input[0]) if node.op_type == "Conv" else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or not np.all(inits[q.input[2]] == 0):
            raise ExportError(f"{int8_onnx}: {node.name} is not fed by a symmetric QuantizeLinear (not a TensorRT "
                              "Q/DQ export)")
        weight = producers.get(node.input[1])
        channels = int(np.size(inits[weight.input[1]])) if weight is not None and weight.op_type == "DequantizeLinear" else -1
        out[module_name(node.name)] = QuantizedConv(float(inits[q.input[1]]), channels)
    if not out:
        raise ExportError(f"{int8_onnx}: no quantized convolution (expected rrl.int8.onnx from `rrl-edge export --int8`)")
    return out


class _FakeQuantWeight(nn.Module):
    """Parametrization: per-output-channel symmetric int8 rounding of a conv weight."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        scale = (amax / WEIGHT_QMAX).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


def attach(model: nn.Module, convs: Dict[str, QuantizedConv]) -> List[torch.utils.hooks.RemovableHandle]:
    """Simulate the Q/DQ model in ``model``: fake-quantized inputs and weights of the named convolutions."""
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    for name, q in convs.items():  # every check before the model is touched
        conv = modules.get(name)
        if not isinstance(conv, nn.Conv2d) or conv.out_channels != q.out_channels:
            raise ExportError(f"the Q/DQ model quantizes {name!r} with {q.out_channels} output channels, which is "
                              "no such Conv2d of this checkpoint (was rrl.int8.onnx exported from it?)")
    handles = []
    for name, q in convs.items():
        conv = modules[name]

        def quantize_input(_module: nn.Module, args: tuple, s: float = q.input_scale) -> tuple:
            return (torch.fake_quantize_per_tensor_affine(args[0], s, 0, ACT_QMIN, ACT_QMAX),)

        handles.append(conv.register_forward_pre_hook(quantize_input))
        parametrize.register_parametrization(conv, "weight", _FakeQuantWeight())
    return handles


def detach(model: nn.Module, handles: List[torch.utils.hooks.RemovableHandle]) -> None:
    """Back to the float network: the trained float weights stay, the rounding goes."""
    from torch.nn.utils import parametrize

    for handle in handles:
        handle.remove()
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def finetune(cfg: QATConfig, train: PatchSet) -> Dict[str, object]:
    """Fine-tune ``cfg.checkpoint`` with the Q/DQ model's rounding; write ``cfg.out``; return what was done."""
    from rrl_edge.training.loader import PairLoader
    from rrl_edge.runtime.progress import progress

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, meta = load_model(cfg.checkpoint)
    teacher = copy.deepcopy(model).eval()
    convs = quantized_inputs(Path(cfg.int8_onnx))
    handles = attach(model, convs)
    model.train()
    _freeze_batchnorm(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    bce = nn.BCEWithLogitsLoss()
    loader = PairLoader(train.patches, train.labels, cfg.batch_size, seed=cfg.seed, source="the QAT training pairs")
    started, losses = time.time(), []
    batches = loader.iterate()
    bar = progress(range(cfg.steps), "QAT", cfg.progress, total=cfg.steps, unit="step")
    for _ in bar:
        batch = next(batches)
        with torch.no_grad():
            target = teacher.logit(batch.vis, batch.other)
        logit = model.logit(batch.vis, batch.other)
        loss = bce(logit, batch.labels) + cfg.distill * torch.mean((logit - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    detach(model, handles)
    model.eval()
    record = {**{k: v for k, v in asdict(cfg).items() if k not in ("progress", "threads")},
              "quantized_convs": sorted(convs), "seconds": round(time.time() - started, 1),
              "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:]))}
    extra = {k: v for k, v in meta.items() if k in ("val_fpr95",)}
    save_checkpoint(cfg.out, model, qat=record, parent=str(cfg.checkpoint), **extra)
    return record

