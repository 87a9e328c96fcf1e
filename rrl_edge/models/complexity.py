"""Parameter and FLOP counts of a model, as `rrl-edge model-info` prints them."""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from rrl_edge.models.rrlnet import RRLNet, RRLNetConfig, RRLNetTrain


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's affine terms included, running statistics not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: RRLNet) -> int:
    """Multiply-accumulates of one pair through the convolutions and dense layers (the bulk of the cost)."""
    macs: List[int] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            per_output = module.in_channels // module.groups
            for k in module.kernel_size:
                per_output *= k
            macs.append(output.numel() * per_output)
        elif isinstance(module, nn.Linear):
            macs.append(output.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    size = model.cfg.patch_size
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, size, size), torch.zeros(1, 1, size, size))
    finally:
        for h in handles:
            h.remove()
    return sum(macs)


def model_info(width: float) -> Dict[str, float]:
    """What `rrl-edge model-info` reports: deployed and training-graph sizes, deployed GFLOPs (2 per MAC)."""
    cfg = RRLNetConfig(width=width)
    deploy = RRLNet(cfg)
    return {
        "width": width,
        "deploy_params": count_params(deploy),
        "train_params": count_params(RRLNetTrain(cfg)),
        "deploy_gflops_per_pair": round(2 * count_macs(deploy) / 1e9, 4),
    }
