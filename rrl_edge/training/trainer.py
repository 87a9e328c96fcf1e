"""MLPP training of RRL-Net: resumable, distributed (torchrun), keeps the best validation checkpoint.

Files in ``out_dir``:
- ``last.pt``: the whole training state (training graph, optimizer, schedule, position in the data),
  rewritten atomically every evaluation; ``--resume`` continues from it exactly.
- ``best.pt``: the pruned (deployed) network with the best validation FPR95 so far, never chosen on
  test data; among equal FPR95s the lower validation log loss wins (a user's few validation pairs read 0.00 at
  every step, and the first step is then the least trained, not the best).
- ``curve.json`` / ``curve.png``: validation FPR95 and training loss against minutes and pairs seen.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from rrl_edge.atomic import save_figure, write_json
from rrl_edge.checkpoint import load_train_model, read_checkpoint, save_checkpoint, shipped_for_layout
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.errors import CheckpointError, DataError
from rrl_edge.interrupts import raise_if_requested
from rrl_edge.runtime.registry import score_with
from rrl_edge.runtime.torch_runner import check_torch_device
from rrl_edge.fpr95_table import DIGITS, FPR95Table
from rrl_edge.metrics import fpr95
from rrl_edge.models.rrlnet import RRLNetConfig, RRLNetTrain, TrainOutputs
from rrl_edge.training.augment import AugmentConfig
from rrl_edge.training.config import TrainConfig  # its defaults are the `rrl-edge train` flags'
from rrl_edge.training.modality import ModalityConfig, parse_families
from rrl_edge.training.loader import PairLoader


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    minutes: float = 0.0
    best_val_fpr95: float = float("inf")
    best_val_log_loss: float = float("inf")  # breaks ties of best_val_fpr95
    history: List[Dict[str, float]] = field(default_factory=list)


def validation_log_loss(labels: Dict[str, np.ndarray], scores: Dict[str, np.ndarray]) -> float:
    """Mean over sources of the scores' log loss (scikit-learn's): a finer reading of the same validation pairs
    than FPR95, which saturates at 0.00 on a few pairs of a new camera."""
    from sklearn.metrics import log_loss

    per_source = [log_loss(labels[k], np.clip(np.asarray(scores[k], np.float64), 1e-7, 1 - 1e-7), labels=[0, 1])
                  for k in labels]
    return round(float(np.mean(per_source)), 6)


def hard_negative_weights(main_logit: torch.Tensor, labels: torch.Tensor, keep: float) -> Optional[torch.Tensor]:
    """Online hard-negative mining: weight 1 for every positive and the ``keep`` fraction of the batch's negatives
    the network currently scores highest, 0 for the easy rest; None when every pair counts (``keep`` 1).

    The training set's negatives are mostly easy (other keypoints far away); the ones that matter are those the
    network confuses (near negatives on fields and water), so the classification terms average over those only.
    """
    if keep >= 1.0:
        return None
    negatives = labels.view(-1) < 0.5
    n_keep = int(math.ceil(keep * int(negatives.sum())))
    weights = (~negatives).to(main_logit.dtype)
    if n_keep > 0:
        scores = main_logit.detach().view(-1).masked_fill(~negatives, float("-inf"))
        weights[torch.topk(scores, n_keep).indices] = 1.0
    return weights.view_as(labels)


def mlpp_loss(out: TrainOutputs, vis: torch.Tensor, other: torch.Tensor, labels: torch.Tensor,
              hard_negatives: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sum of every MLPP loss, weights 1: BCE for the main and auxiliary heads, pixel MSE for the decoders.

    The paper adds a VGG19 perceptual term to the reconstruction; no pretrained VGG weights can be
    fetched here, so the decoders use a pixel loss only. ``hard_negatives`` < 1 mines the batch's hardest
    negatives for every BCE term (the decoders still see every pair). Returns (total, main BCE).
    """
    weights = hard_negative_weights(out.main, labels, hard_negatives)

    def bce(logit: torch.Tensor) -> torch.Tensor:
        if weights is None:
            return F.binary_cross_entropy_with_logits(logit, labels)
        per_pair = F.binary_cross_entropy_with_logits(logit, labels, reduction="none")
        return (per_pair * weights).sum() / weights.sum().clamp_min(1.0)

    main = bce(out.main)
    total = main
    for logit in out.aux_logits.values():
        total = total + bce(logit)
    if out.recon_vis is not None and out.recon_other is not None:
        total = total + F.mse_loss(out.recon_vis, vis) + F.mse_loss(out.recon_other, other)
    return total, main


def lr_at(step: int, total_steps: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Warm-up, then cosine decay to lr/100 over the steps, or over ``--max-minutes`` if that comes first.

    Following the clock as well as the step count means a run on a busy machine still anneals before
    its deadline instead of being cut off at a high learning rate.
    """
    if cfg.schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, max(progress, time_fraction))
    floor = cfg.lr / 100
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class DistContext:
    """Rank, world size and device under torchrun; a single process otherwise."""

    def __init__(self, device: str = "auto") -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_torch_device(device, "rrl-edge train")
        self.device = torch.device(f"cuda:{local_rank}" if device == "cuda" else "cpu")
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if it is true on any (stop decisions must agree)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            # DDP's hooks form reference cycles; left to interpreter shutdown, its reducer and Gloo's work
            # objects are torn down without the GIL and abort the process (seen once in CI). Free them now.
            gc.collect()
            dist.destroy_process_group()


def _initial_model(cfg: TrainConfig) -> Tuple[RRLNetTrain, Optional[Dict[str, Any]]]:
    if cfg.resume:
        model, payload = load_train_model(cfg.resume)
        if payload.get("graph") != "train" or "optimizer" not in payload:
            raise CheckpointError(f"{cfg.resume} is not a training checkpoint (last.pt) and cannot be resumed; use --init-from")
        _check_resume_matches(cfg, payload.get("train_config") or {})
        _check_finite(model, cfg.resume)
        return model, payload
    if cfg.init_from:
        model, _ = load_train_model(cfg.init_from)
        _check_finite(model, cfg.init_from)
        return model, None
    torch.manual_seed(cfg.seed)
    return RRLNetTrain(RRLNetConfig(width=cfg.width)), None


def _check_finite(model: torch.nn.Module, path: Any) -> None:
    """Weights with NaN or inf cannot be trained from; said of the checkpoint before a first step blames --lr."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: holds non-finite weights (NaN or inf in {name}); it cannot be trained from")


# Options that decide which batches a step sees and what its loss is: a resume that changed one would not continue
# the run it names (the CLI builds the config from its own flags, so a forgotten flag would drop silently).
_RESUME_MUST_MATCH = {"batch_size": "--batch", "seed": "--seed", "order_seed": "--order-seed",
                      "augment": "--no-augment", "hard_negatives": "--hard-negatives",
                      "modality": "--modality", "modality_prob": "--modality-prob"}


def _check_resume_matches(cfg: TrainConfig, stored: Dict[str, Any]) -> None:
    for key, flag in _RESUME_MUST_MATCH.items():
        if key in stored and stored[key] != getattr(cfg, key):
            raise CheckpointError(
                f"{cfg.resume}: the run was trained with {key.replace('_', ' ')} {stored[key]!r}, not {getattr(cfg, key)!r}; "
                f"pass the same {flag} to continue it (or --init-from to start a new run from its weights)")


def _by_source(entry: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """Each validation source's FPR95 of a joint run's history entry (None for one source): from its
    "val_fpr95_table", or the "val_fpr95_by_source" of a run started before that was written (resumed)."""
    if "val_fpr95_table" in entry:
        table = FPR95Table.from_json(entry["val_fpr95_table"], source="curve.json")
        return table.fpr95_by_category() if len(table) > 1 else None
    return entry.get("val_fpr95_by_source")


def _plot_curve(history: List[Dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [h for h in history if "val_fpr95" in h]
    if not evals:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [h["minutes"] for h in evals]
    by_source = [_by_source(h) for h in evals]
    ax.plot(minutes, [h["val_fpr95"] for h in evals], marker="o", label="mean" if any(by_source) else None)
    if all(by_source):  # a joint run: each source's own curve beside the mean it is chosen on
        for name in by_source[0]:  # type: ignore[union-attr]
            ax.plot(minutes, [b[name] for b in by_source], linestyle="--", alpha=0.7, label=name)  # type: ignore[index]
        ax.legend()
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation FPR95 (%)")
    if min(h["val_fpr95"] for h in evals) > 0:  # log scale only where every point has one (0 % happens on small sets)
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("RRL-Net learning curve")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


ValSets = Union[PatchSet, Dict[str, PatchSet]]


def train(cfg: TrainConfig, train_set: PatchSet, val_sets: ValSets, data_info: Optional[Dict[str, Any]] = None) -> RunState:
    """Run (or resume) MLPP training; returns the final state. Only rank 0 writes files.

    ``val_sets``: one validation set, or one per source of a joint run; the run is judged on the mean of
    their FPR95s (each source counts the same, whatever its size)."""
    ctx = DistContext(cfg.device)
    if isinstance(val_sets, PatchSet):
        val_sets = {val_sets.name: val_sets}
    try:
        return _train(cfg, train_set, val_sets, data_info or {}, ctx)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, train_set: PatchSet, val_sets: Dict[str, PatchSet], data_info: Dict[str, Any],
           ctx: DistContext) -> RunState:
    if not val_sets or any(len(v) == 0 for v in val_sets.values()) or len(train_set) == 0:
        raise DataError("training needs non-empty training and validation sets")
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // ctx.world_size)
    torch.set_num_threads(threads)
    out_dir = Path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder {out_dir} is a file")
    if cfg.init_from == "shipped":  # resolved here so the run records which model it started from
        cfg = replace(cfg, init_from=str(shipped_for_layout(data_info.get("layout", "vis-nir"))))

    model, resume_payload = _initial_model(cfg)
    if model.cfg.width != cfg.width:  # the checkpoint's width is what trains: record that, not --width
        if ctx.is_main:
            tqdm.write(f"{cfg.resume or cfg.init_from}: width {model.cfg.width:g}; training at it (--width "
                       f"{cfg.width:g} does not apply to a run started from weights)")
        cfg = replace(cfg, width=model.cfg.width)
    model.to(ctx.device)
    optimizer = torch.optim.NAdam(model.parameters(), lr=cfg.lr)
    state = RunState()
    if resume_payload is not None:
        optimizer.load_state_dict(resume_payload["optimizer"])
        state = RunState(**resume_payload["run_state"])
    trainable: torch.nn.Module = model
    if ctx.world_size > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )

    if cfg.compile:
        trainable = torch.compile(trainable)  # type: ignore[assignment]

    loader = PairLoader(
        train_set.patches, train_set.labels, cfg.batch_size,
        seed=cfg.seed if cfg.order_seed is None else cfg.order_seed, rank=ctx.rank,
        world_size=ctx.world_size, augment=AugmentConfig() if cfg.augment else None,
        modality=ModalityConfig(parse_families(cfg.modality), cfg.modality_prob),
        source=data_info.get("source", "the training set"),
    )
    created = ctx.is_main and not out_dir.exists()  # removed again if the run ends before writing anything
    if ctx.is_main:  # only now: a bad checkpoint or too few pairs must not leave an empty run folder behind
        out_dir.mkdir(parents=True, exist_ok=True)
    total_steps = cfg.max_steps or max(1, int(cfg.epochs * loader.batches_per_epoch))
    started = time.monotonic() - state.minutes * 60  # minutes count across resumes
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else None
    run_info = {"train_config": asdict(cfg), "data": data_info, "train_pairs": len(train_set),
                "val_pairs": sum(len(v) for v in val_sets.values())}
    autocast = cfg.amp and ctx.device.type == "cuda"

    def evaluate_and_save(train_loss: float) -> None:
        state.minutes = (time.monotonic() - started) / 60
        if ctx.is_main:
            scores = {name: score_with(model.net, v.patches, batch_size=256, device=str(ctx.device))
                      for name, v in val_sets.items()}
            labels = {name: v.labels for name, v in val_sets.items()}
            table = FPR95Table.from_scores(labels, scores, fpr95=fpr95)
            val = round(table.mean_fpr95, DIGITS)  # the mean over sources (each counts the same): what is chosen on
            loss = validation_log_loss(labels, scores)  # breaks its ties
            model.train()
            entry = {
                "step": state.step, "epoch": state.step / loader.batches_per_epoch,
                "minutes": round(state.minutes, 3), "pairs_seen": state.step * cfg.batch_size * ctx.world_size,
                "train_loss": round(train_loss, 5), "val_fpr95": val, "lr": optimizer.param_groups[0]["lr"],
            }
            entry["val_log_loss"] = loss
            entry["val_fpr95_table"] = table.to_json()  # each source's FPR95 and pairs (rrl_edge.fpr95_table)
            state.history.append(entry)
            if (val, loss) < (state.best_val_fpr95, state.best_val_log_loss):
                state.best_val_fpr95, state.best_val_log_loss = val, loss
                save_checkpoint(out_dir / "best.pt", model.net, val_fpr95=val, val_log_loss=loss,
                                val_fpr95_table=table.to_json(), step=state.step, **run_info)
            save_checkpoint(
                out_dir / "last.pt", model, optimizer=optimizer.state_dict(), run_state=asdict(state), **run_info
            )
            write_json({"best_val_fpr95": state.best_val_fpr95, "history": state.history}, out_dir / "curve.json")
            _plot_curve(state.history, out_dir / "curve.png")
            tqdm.write(f"step {state.step}/{total_steps}  loss {train_loss:.4f}  val FPR95 {val:.2f}%  best {state.best_val_fpr95:.2f}%  ({state.minutes:.1f} min)")
        ctx.barrier()

    model.train()
    bar = tqdm(total=total_steps, initial=state.step, desc="training", unit="step", disable=not (cfg.progress and ctx.is_main))
    running: List[float] = []
    batches = loader.iterate(start=(state.epoch, state.batch_in_epoch))
    try:
        while state.step < total_steps:
            raise_if_requested()
            batch = next(batches)
            vis, other, labels = (t.to(ctx.device, non_blocking=True) for t in (batch.vis, batch.other, batch.labels))
            time_fraction = (time.monotonic() - started) / (cfg.max_minutes * 60) if cfg.max_minutes else 0.0
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, total_steps, cfg, time_fraction)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = trainable(vis, other)
                loss, main = mlpp_loss(out, vis, other, labels, cfg.hard_negatives)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {state.step}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            state.epoch, state.batch_in_epoch = batch.epoch, batch.index + 1
            if state.batch_in_epoch >= loader.batches_per_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            running.append(float(loss.item()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}", main=f"{main.item():.3f}")
            out_of_time = deadline is not None and time.monotonic() > deadline
            stop = ctx.any_flag(out_of_time)
            if state.step % cfg.eval_every == 0 or state.step == total_steps or stop:
                evaluate_and_save(float(np.mean(running[-cfg.eval_every :])))
            if stop:
                if ctx.is_main:
                    tqdm.write(f"stopped by --max-minutes at step {state.step} of {total_steps}; --resume {out_dir / 'last.pt'} continues")
                break
    finally:
        bar.close()
        batches.close()
        if created and not any(out_dir.iterdir()):  # a failed first write (a full disk) leaves no empty run folder
            out_dir.rmdir()
    return state


def read_run_state(path: Path) -> RunState:
    """The run state stored in a last.pt (for reports and tests)."""
    return RunState(**read_checkpoint(path)["run_state"])
