"""Checkpoints: a model's weights with the config that rebuilds it, saved atomically, loaded strictly.

A checkpoint is a torch file holding a dict with ``format == "rrl-edge-checkpoint"``. ``graph`` says
whether ``state_dict`` is the deployed network or the MLPP training graph; the deployed network can be
taken from either. Training checkpoints also hold the optimizer, scheduler and step to resume from.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from rrl_edge.atomic import atomic_write
from rrl_edge.errors import CheckpointError
from rrl_edge.limits import MAX_CHANNELS, MAX_WIDTH
from rrl_edge.models.rrlnet import RRLNet, RRLNetConfig, RRLNetTrain, with_polarity

FORMAT = "rrl-edge-checkpoint"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
# joint: one network for VIS-NIR and VIS-LWIR (trained on both, whole-range cut): the default of every command
# (eval, export, register, train --init-from shipped), so the model a user evaluates is the model they deploy.
# Width 0.25 over joint-w050: the same RoadScene FPR95, 3.68 vs 2.40 on VIS-NIR, at 2.6x the pairs/s.
DEFAULT_MODEL = "joint"
SHIPPED = {"vis-nir": SHIPPED_DIR / "rrlnet_visnir.pt", "roadscene": SHIPPED_DIR / "rrlnet_roadscene.pt",
           "joint": SHIPPED_DIR / "rrlnet_joint.pt",
           # the family's width 0.5 (docs/training.md, "The model family"): better on VIS-NIR, as good on VIS-LWIR, 2.6x slower
           "joint-w050": SHIPPED_DIR / "rrlnet_joint_w050.pt",
           # joint fine-tuned 2,400 steps with random non-monotone intensity curves (train --modality remap): the one
           # randomization that helped leave-one-dataset-out in both directions; not the default, it registers the
           # project's own pairs slightly worse (docs/generalization.md)
           "joint-remap": SHIPPED_DIR / "rrlnet_joint_remap.pt"}

PathLike = Union[str, os.PathLike]


def shipped_checkpoint(name: str = DEFAULT_MODEL) -> Path:
    """Path of a model that ships inside the package."""
    if name not in SHIPPED:
        raise CheckpointError(f"no shipped model named {name!r}; there are {sorted(SHIPPED)}")
    path = SHIPPED[name]
    if not path.is_file():
        raise CheckpointError(f"the shipped model {path} is missing from this installation")
    return path


def shipped_for_layout(layout: str) -> Path:
    """The shipped model for data of this layout (``data.layouts.LAYOUTS``): the joint VIS-NIR + VIS-LWIR model
    for every layout since it beats each single-dataset model on that model's own test split; the same for a
    patch file."""
    from rrl_edge.data.layouts import LAYOUTS  # OpenCV and Pillow load only when a layout is asked about

    return shipped_checkpoint(LAYOUTS[layout].shipped if layout in LAYOUTS else DEFAULT_MODEL)


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """torch.save through the project's atomic writer: a crash never leaves half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(
    path: PathLike,
    model: Union[RRLNet, RRLNetTrain],
    *,
    half: bool = False,
    **extra: Any,
) -> None:
    """Save weights + config (+ anything in ``extra``: optimizer, step, metrics, data manifest)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "graph": "train" if isinstance(model, RRLNetTrain) else "deploy",
        "config": model.cfg.to_dict(),
        "state_dict": state,
        **extra,
    }
    atomic_torch_save(payload, path)


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load and check a checkpoint file; every failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # weights_only: a foreign pickle is refused before any of its code can run
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).lower()
        # torch 2.13 says "unsupported GLOBAL", older ones "Unsupported global": either way a hostile or foreign
        # pickle, and torch's own advice (retry with weights_only=False) would run its code, so it is not repeated.
        if "unsupported global" not in text:  # garbage bytes fail here too, with another reason
            raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {_first_line(exc)}") from None
        raise CheckpointError(
            f"checkpoint {path} holds Python objects besides tensors and plain data, so it is not an rrl-edge "
            "checkpoint; refused without running them"
        ) from None
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {_first_line(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not an rrl-edge checkpoint (no format={FORMAT!r} entry); "
            "it may come from another project"
        )
    for key in ("config", "state_dict", "graph"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks its {key!r} entry")
    check_payload(payload, path)
    return payload


def _first_line(exc: BaseException) -> str:
    """torch's messages run to dozens of lines, some advising weights_only=False: keep the first, minus that."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the reason follows torch's paragraph of advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return (lines[0] if lines else type(exc).__name__)[:300]


GRAPHS = ("deploy", "train")
# run_state field -> accepted types (bool is not an int here)
RUN_STATE_TYPES: Dict[str, Tuple[type, ...]] = {
    "step": (int,), "epoch": (int,), "batch_in_epoch": (int,), "minutes": (int, float),
    "best_val_fpr95": (int, float), "history": (list,), "best_val_log_loss": (int, float),
}
OPTIONAL_RUN_STATE = {"best_val_log_loss"}  # a last.pt written before 0.8.0 lacks it and resumes with its default


def _is_number(value: Any, kinds: Tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


def check_payload(payload: Dict[str, Any], path: Path) -> None:
    """The types of every entry a later step relies on, so a wrong one is a one-line refusal here and never a
    traceback in the middle of loading, resuming or exporting."""
    version = payload.get("format_version", 0)
    if not _is_number(version, (int,)):
        raise CheckpointError(f"checkpoint {path}: format_version is {version!r}, expected a whole number")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}, newer than this rrl-edge")
    if payload["graph"] not in GRAPHS:
        raise CheckpointError(f"checkpoint {path}: graph is {payload['graph']!r}, expected one of {GRAPHS}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"checkpoint {path}: state_dict is a {type(state).__name__}, expected a dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: state_dict entry {key!r} is a {type(value).__name__}, "
                                  "expected a tensor")
        # BatchNorm's batch counter is the one integer buffer of the network; every weight is a float
        if not value.is_floating_point() and not key.endswith("num_batches_tracked"):
            raise CheckpointError(f"checkpoint {path}: weight {key} has dtype {value.dtype}, expected a float")
    config = payload["config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: config is a {type(config).__name__}, expected a dict")
    width = config.get("width", 1.0)
    if not _is_number(width, (int, float)) or not 0 < width <= MAX_WIDTH:
        raise CheckpointError(f"checkpoint {path}: config width {width!r} is not a number in (0, {MAX_WIDTH}]")
    for key, value in config.items():
        if key.endswith("_widths"):
            if not isinstance(value, (list, tuple)) or not all(_is_number(v, (int,)) and 0 < v for v in value):
                raise CheckpointError(f"checkpoint {path}: config {key} is {value!r}, expected positive whole numbers")
            if max(value, default=0) * width > MAX_CHANNELS:
                raise CheckpointError(f"checkpoint {path}: config {key} asks for {max(value) * width:.0f} channels, "
                                      f"more than {MAX_CHANNELS}")
    run_state = payload.get("run_state")
    if run_state is not None:
        if not isinstance(run_state, dict):
            raise CheckpointError(f"checkpoint {path}: run_state is a {type(run_state).__name__}, expected a dict")
        for key, value in run_state.items():
            kinds = RUN_STATE_TYPES.get(key)
            if kinds is None:
                raise CheckpointError(f"checkpoint {path}: run_state has an unknown entry {key!r}")
            if not _is_number(value, kinds):
                raise CheckpointError(f"checkpoint {path}: run_state {key} is {value!r}, expected "
                                      f"{' or '.join(k.__name__ for k in kinds)}")
        missing = sorted(set(RUN_STATE_TYPES) - OPTIONAL_RUN_STATE - set(run_state))
        if missing:
            raise CheckpointError(f"checkpoint {path}: run_state lacks {', '.join(missing)}")
    if "optimizer" in payload and not isinstance(payload["optimizer"], dict):
        raise CheckpointError(f"checkpoint {path}: optimizer is a {type(payload['optimizer']).__name__}, expected a dict")


def _build(payload: Dict[str, Any], path: Path) -> Union[RRLNet, RRLNetTrain]:
    try:
        cfg = RRLNetConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable model config: {exc}") from None
    model: Union[RRLNet, RRLNetTrain] = RRLNetTrain(cfg) if payload["graph"] == "train" else RRLNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(f"checkpoint {path} does not fit its own config: {' '.join(first)}") from None
    return model


def load_model(path: Optional[PathLike] = None, polarity: Optional[str] = None) -> Tuple[RRLNet, Dict[str, Any]]:
    """The deployed network (eval mode) from a checkpoint, or the default shipped model if ``path`` is None.
    ``polarity`` (rrl_edge.models.POLARITIES) replaces the checkpoint's own; None keeps it."""
    path = Path(path) if path is not None else shipped_checkpoint()
    payload = read_checkpoint(path)
    model = _build(payload, path)
    net = model.prune() if isinstance(model, RRLNetTrain) else model
    if polarity is not None:
        net = with_polarity(net, polarity)
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer", "scheduler", "rng")}
    meta["config"] = net.cfg.to_dict()
    meta["path"] = str(path)
    return net.eval(), meta


def load_train_model(path: PathLike) -> Tuple[RRLNetTrain, Dict[str, Any]]:
    """The MLPP training graph from a training checkpoint (resume) or a deployed one (warm start).

    A deployed checkpoint fills ``net``; decoders and auxiliary heads start fresh.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    model = _build(payload, path)
    if isinstance(model, RRLNet):
        train = RRLNetTrain(model.cfg)
        train.net.load_state_dict(model.state_dict())
        model = train
    return model, payload
