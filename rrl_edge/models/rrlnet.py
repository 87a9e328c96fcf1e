"""RRL-Net (Yu et al., Information Fusion; arXiv 2403.11751), re-implemented in PyTorch.

One file for the model family, timm style: a config dataclass, the building blocks, the deployed
network (:class:`RRLNet`: two ALFE encoders + FIL + metric head), the MLPP training graph
(:class:`RRLNetTrain`: adds decoders and auxiliary heads) and builder functions. Pruning the
training graph returns its ``net`` submodule, so the deployed graph is the training graph's main
path by construction and carries no extra cost.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rrl_edge.contracts import PATCH_SIZE, POLARITIES, POLARITY_AS_IS, POLARITY_BOTH

BASE_ENCODER_WIDTHS = (16, 32, 64, 128, 256)
BASE_FIL_WIDTHS = (32, 64, 128, 256, 512)
BASE_HEAD_WIDTHS = (512, 256)
BASE_DECODER_WIDTHS = (128, 64, 32, 16)
AUX_STAGES = (3, 4, 5)  # 1-based FIL stages that get stage heads and module heads in MLPP


@dataclass(frozen=True)
class RRLNetConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint."""

    width: float = 1.0  # channel multiplier; 1.0 is the paper's network
    encoder_widths: Tuple[int, ...] = BASE_ENCODER_WIDTHS
    fil_widths: Tuple[int, ...] = BASE_FIL_WIDTHS
    head_widths: Tuple[int, ...] = BASE_HEAD_WIDTHS
    decoder_widths: Tuple[int, ...] = BASE_DECODER_WIDTHS
    leaky_slope: float = 0.1
    patch_size: int = PATCH_SIZE
    polarity: str = POLARITY_AS_IS  # rrl_edge.contracts.POLARITIES; training scores the image as given

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity {self.polarity!r} is not one of {', '.join(POLARITIES)}")

    def scaled(self, widths: Tuple[int, ...]) -> Tuple[int, ...]:
        """Channel counts at this width, never below 4 so that tiny networks still train."""
        return tuple(max(4, int(round(w * self.width))) for w in widths)

    def to_dict(self) -> Dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "RRLNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RRLNetConfig fields: {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)  # type: ignore[arg-type]


def eca_kernel_size(n: int) -> int:
    """Conv1d kernel of a gate over n values: |(log2 n + 1) / 2| made odd (ECA-Net's rule)."""
    t = int(abs((math.log2(n) + 1) / 2))
    return t if t % 2 == 1 else t + 1


class ConvUnit(nn.Sequential):
    """3x3 conv (stride 1, same padding, bias) -> BatchNorm -> LeakyReLU(0.1): the paper's unit."""

    def __init__(self, in_ch: int, out_ch: int, slope: float = 0.1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(slope),
        )


class AxisGate(nn.Module):
    """One MGLA gate along one axis of a (B, C, H, W) tensor.

    The mean over the gated axis gives a map over the other two axes; a softmax over all positions of
    that map weights a sum that leaves one value per index of the gated axis; a 1-filter Conv1d and a
    sigmoid turn that vector into the gate.
    """

    def __init__(self, axis: int, length: int) -> None:
        super().__init__()
        self.axis = axis  # 1 = channels, 2 = height, 3 = width
        k = eca_kernel_size(length)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        moved = x.movedim(self.axis, 1)  # (B, L, P, Q): L is the gated axis
        b, length = moved.shape[0], moved.shape[1]
        flat = moved.reshape(b, length, -1)  # (B, L, P*Q)
        weights = torch.softmax(flat.mean(dim=1), dim=-1)  # (B, P*Q)
        pooled = torch.bmm(flat, weights.unsqueeze(-1)).transpose(1, 2)  # (B, 1, L)
        gate = torch.sigmoid(self.conv(pooled)).reshape(b, length)
        shape = [b, 1, 1, 1]
        shape[self.axis] = length
        return gate.reshape(shape)


class MGLA(nn.Module):
    """Multi-granularity lightweight attention: out = x * g_c * g_h * g_w (no residual)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.gate_c = AxisGate(1, channels)
        self.gate_h = AxisGate(2, height)
        self.gate_w = AxisGate(3, width)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate_c(x) * self.gate_h(x) * self.gate_w(x)


class ALFE(nn.Module):
    """Attention-based lightweight feature extractor: five conv units, each stage ending in MGLA."""

    def __init__(self, cfg: RRLNetConfig) -> None:
        super().__init__()
        widths = cfg.scaled(cfg.encoder_widths)
        self.convs = nn.ModuleList()
        self.attns = nn.ModuleList()
        in_ch, size = 1, cfg.patch_size
        for stage, out_ch in enumerate(widths):
            if stage > 0:
                size //= 2
            self.convs.append(ConvUnit(in_ch, out_ch, cfg.leaky_slope))
            self.attns.append(MGLA(out_ch, size, size))
            in_ch = out_ch

    def forward(self, x: Tensor) -> List[Tensor]:
        features = []
        for stage, (conv, attn) in enumerate(zip(self.convs, self.attns)):
            x = conv(x)
            if stage > 0:
                x = F.max_pool2d(x, 2)
            x = attn(x)
            features.append(x)
        return features


class FILStage(nn.Module):
    """Feature interaction learning at one stage: cross-gated private features, then two conv units."""

    def __init__(self, channels: int, prev_ch: int, out_ch: int, slope: float) -> None:
        super().__init__()

        def private() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.LeakyReLU(slope))

        def gate() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())

        self.private_vis, self.private_other = private(), private()
        self.gate_vis, self.gate_other = gate(), gate()
        self.convs = nn.Sequential(
            ConvUnit(2 * channels + prev_ch, out_ch, slope), ConvUnit(out_ch, out_ch, slope)
        )

    def forward(self, f_vis: Tensor, f_other: Tensor, prev: Tensor | None) -> Tuple[Tensor, Tensor]:
        """Returns (stage output, a3 + a4): the second feeds MLPP's module heads."""
        a1, a2 = self.private_vis(f_vis), self.private_other(f_other)
        g1, g2 = self.gate_vis(f_vis), self.gate_other(f_other)
        a3, a4 = a1 * g2, a2 * g1
        parts = [torch.abs(a3 - a1), torch.abs(a4 - a2)]
        if prev is not None:
            parts.append(F.max_pool2d(prev, 2))
        return self.convs(torch.cat(parts, dim=1)), a3 + a4


class FIL(nn.Module):
    """The interaction branch: one FILStage per encoder stage, chained through max-pooling."""

    def __init__(self, cfg: RRLNetConfig) -> None:
        super().__init__()
        enc, fil = cfg.scaled(cfg.encoder_widths), cfg.scaled(cfg.fil_widths)
        self.stages = nn.ModuleList(
            FILStage(c, fil[i - 1] if i > 0 else 0, fil[i], cfg.leaky_slope) for i, c in enumerate(enc)
        )

    def forward(self, feats_vis: List[Tensor], feats_other: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        outputs: List[Tensor] = []
        interactions: List[Tensor] = []
        prev: Tensor | None = None
        for stage, f_vis, f_other in zip(self.stages, feats_vis, feats_other):
            prev, inter = stage(f_vis, f_other, prev)
            outputs.append(prev)
            interactions.append(inter)
        return outputs, interactions


class MetricHead(nn.Module):
    """Global average pool -> Dense 512 ReLU -> Dense 256 ReLU -> Dense 1 (a logit; sigmoid outside)."""

    def __init__(self, in_ch: int, cfg: RRLNetConfig) -> None:
        super().__init__()
        h1, h2 = cfg.scaled(cfg.head_widths)
        self.mlp = nn.Sequential(nn.Linear(in_ch, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.mean(dim=(2, 3)))


class RRLNet(nn.Module):
    """The deployed network: ALFE (VIS) + ALFE (other spectrum) + FIL + metric head.

    ``forward`` takes two (B, 1, 64, 64) float tensors in [0, 1] and returns the (B, 1) sigmoid score.
    """

    def __init__(self, cfg: RRLNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.alfe_vis = ALFE(cfg)
        self.alfe_other = ALFE(cfg)
        self.fil = FIL(cfg)
        self.head = MetricHead(cfg.scaled(cfg.fil_widths)[-1], cfg)

    def forward_features(self, vis: Tensor, other: Tensor) -> Dict[str, List[Tensor]]:
        """Every intermediate the MLPP training graph attaches to."""
        feats_vis, feats_other = self.alfe_vis(vis), self.alfe_other(other)
        fil_out, interactions = self.fil(feats_vis, feats_other)
        return {"vis": feats_vis, "other": feats_other, "fil": fil_out, "interaction": interactions}

    def logit(self, vis: Tensor, other: Tensor) -> Tensor:
        return self.head(self.forward_features(vis, other)["fil"][-1])

    def forward(self, vis: Tensor, other: Tensor) -> Tensor:
        if self.cfg.polarity == POLARITY_BOTH:  # both views in one batch; BatchNorm in eval mode keeps samples apart
            both = torch.sigmoid(self.logit(torch.cat([vis, vis]), torch.cat([other, 1.0 - other])))
            return both.reshape(2, -1, 1).mean(dim=0)
        return torch.sigmoid(self.logit(vis, other))


def with_polarity(model: RRLNet, polarity: str) -> RRLNet:
    """``model`` reading the other spectrum with ``polarity`` (POLARITIES); the weights are shared, the module
    handed in is left as it was."""
    if polarity == model.cfg.polarity:
        return model
    changed = copy.copy(model)  # a shallow copy: the same parameters and submodules, its own cfg
    changed.cfg = replace(model.cfg, polarity=polarity)  # raises ValueError for an unknown polarity
    return changed


class Decoder(nn.Module):
    """MLPP autoencoder of one branch: from the stage-5 feature back to the 64x64 input patch."""

    def __init__(self, cfg: RRLNetConfig) -> None:
        super().__init__()
        in_ch = cfg.scaled(cfg.encoder_widths)[-1]
        size = cfg.patch_size // 2 ** (len(cfg.encoder_widths) - 1)
        self.convs = nn.ModuleList()
        self.attns = nn.ModuleList()
        for out_ch in cfg.scaled(cfg.decoder_widths):
            size *= 2
            self.convs.append(ConvUnit(in_ch, out_ch, cfg.leaky_slope))
            self.attns.append(MGLA(out_ch, size, size))
            in_ch = out_ch
        self.out = nn.Conv2d(in_ch, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for conv, attn in zip(self.convs, self.attns):
            x = attn(F.interpolate(conv(x), scale_factor=2, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.out(x))


class ModuleHead(nn.Module):
    """MLPP head on a FIL module's interaction a3 + a4: two conv units, then a metric head."""

    def __init__(self, in_ch: int, width: int, cfg: RRLNetConfig) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvUnit(in_ch, width, cfg.leaky_slope), ConvUnit(width, width, cfg.leaky_slope))
        self.head = MetricHead(width, cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.convs(x))


@dataclass
class TrainOutputs:
    """Logits of every MLPP head and both reconstructions; ``main`` is the deployed score's logit."""

    main: Tensor
    aux_logits: Dict[str, Tensor] = field(default_factory=dict)
    recon_vis: Tensor | None = None
    recon_other: Tensor | None = None


class RRLNetTrain(nn.Module):
    """MLPP training graph: the deployed ``net`` plus decoders, stage heads and module heads."""

    def __init__(self, cfg: RRLNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = RRLNet(cfg)
        enc, fil = cfg.scaled(cfg.encoder_widths), cfg.scaled(cfg.fil_widths)
        self.decoder_vis = Decoder(cfg)
        self.decoder_other = Decoder(cfg)
        aux = [s for s in AUX_STAGES if s < len(fil)]  # stage 5's head is the main head
        self.stage_heads = nn.ModuleDict({f"s{s}": MetricHead(fil[s - 1], cfg) for s in aux})
        self.module_heads = nn.ModuleDict(
            {f"m{s}": ModuleHead(enc[s - 1], fil[s - 1], cfg) for s in AUX_STAGES}
        )

    def forward(self, vis: Tensor, other: Tensor) -> TrainOutputs:
        f = self.net.forward_features(vis, other)
        out = TrainOutputs(main=self.net.head(f["fil"][-1]))
        for name, head in self.stage_heads.items():
            out.aux_logits[name] = head(f["fil"][int(name[1:]) - 1])
        for name, head in self.module_heads.items():
            out.aux_logits[name] = head(f["interaction"][int(name[1:]) - 1])
        out.recon_vis = self.decoder_vis(f["vis"][-1])
        out.recon_other = self.decoder_other(f["other"][-1])
        return out

    def prune(self) -> RRLNet:
        """MLPP post-pruning: keep encoders + FIL + stage-5 head; the score is unchanged."""
        return self.net


def build_rrlnet(width: float = 1.0, **overrides: object) -> RRLNet:
    """The deployed network at a width multiplier (1.0 = the paper)."""
    return RRLNet(RRLNetConfig(width=width, **overrides))  # type: ignore[arg-type]


def build_rrlnet_train(width: float = 1.0, **overrides: object) -> RRLNetTrain:
    """The MLPP training graph at a width multiplier."""
    return RRLNetTrain(RRLNetConfig(width=width, **overrides))  # type: ignore[arg-type]
