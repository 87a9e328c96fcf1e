"""What a training run and a QAT fine-tune depend on, and their defaults, written once.

Standard library only: the command line reads these defaults to build its `train` and `qat` flags without
importing torch (rrl_edge.argtypes.defaults_of), so ``rrl-edge --help`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in its checkpoints."""

    out_dir: str = "runs/rrlnet"
    width: float = 0.25
    batch_size: int = 64
    lr: float = 1e-3
    schedule: str = "cosine"  # "cosine" (warm-up then cosine to lr/100) or "constant" (the paper: 2e-4)
    warmup_steps: int = 200
    epochs: float = 10.0  # passes over the training pairs; sets the schedule's length
    max_steps: Optional[int] = None  # overrides epochs
    max_minutes: Optional[float] = None  # total minutes of the run (across resumes); the cosine also ends by then
    eval_every: int = 250  # steps between validations and checkpoints
    seed: int = 0
    # Seed of the batch order and augmentation (None: ``seed``). The cut's seed also fixes the splits, so a new run
    # from --init-from that should see the pairs in another order (not the same first batches again) sets this one.
    order_seed: Optional[int] = None
    augment: bool = True
    # Modality randomization (rrl_edge.training.modality): family names joined by commas, "" for none
    modality: str = ""
    modality_prob: float = 0.5
    threads: Optional[int] = None
    compile: bool = False  # torch.compile: ~2 min of compiling, then ~25% more pairs/s on 2 CPU cores
    resume: Optional[str] = None  # a last.pt to continue
    init_from: Optional[str] = None  # a checkpoint (or "shipped": the packaged model for the data's layout)
    progress: bool = True
    device: str = "auto"  # "auto" (CUDA when visible), "cpu" or "cuda"
    amp: bool = True  # on CUDA: bfloat16 autocast (no loss scaling needed); ignored on the CPU
    hard_negatives: float = 1.0  # fraction of each batch's negatives the BCE terms keep, hardest first (1: all)


@dataclass
class QATConfig:
    checkpoint: str  # the model to fine-tune (its export's rrl.int8.onnx gives the quantization)
    int8_onnx: str
    out: str
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-5
    distill: float = 1.0  # weight of the squared logit difference to the starting model
    seed: int = 0
    threads: Optional[int] = None
    progress: bool = True
