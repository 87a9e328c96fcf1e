"""Training throughput (pairs/s) of the full MLPP graph on this machine, as a table.

Variants are measured in one process, each against the eager baseline at the same width, so the
ratios hold even when absolute numbers move with machine load. Usage:
    python benchmarks/train_speed.py --widths 0.25,0.5 --steps 12 [--compile]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List

import torch

from rrl_edge.models.rrlnet import build_rrlnet_train
from rrl_edge.training.augment import augment_batch
from rrl_edge.training.trainer import mlpp_loss


def measure(step: Callable[[], None], steps: int, warmup: int) -> float:
    """Median seconds per step after warm-up (compilation and allocator growth excluded)."""
    for _ in range(warmup):
        step()
    times: List[float] = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def make_step(width: float, batch: int, variant: str) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_rrlnet_train(width)
    opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 2, 64, 64)
    labels = torch.randint(0, 2, (batch, 1)).float()
    fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    forward = torch.compile(model) if variant == "compile" else model
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        xa = augment_batch(x, g) if variant == "eager+augment" else x
        vis = xa[:, :1].contiguous(memory_format=fmt)
        other = xa[:, 1:].contiguous(memory_format=fmt)
        loss, _ = mlpp_loss(forward(vis, other), vis, other, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,0.5")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (about 2 min per width)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = ["eager", "eager+augment", "channels_last"] + (["compile"] if args.compile else [])
    print(f"{'width':>6} {'variant':<15} {'pairs/s':>9} {'vs eager':>9}")
    for width in (float(w) for w in args.widths.split(",")):
        base: Dict[str, float] = {}
        for variant in variants:
            warmup = 3 if variant == "compile" else 2
            sec = measure(make_step(width, args.batch, variant), args.steps, warmup)
            base.setdefault("eager", sec)
            print(f"{width:>6} {variant:<15} {args.batch / sec:>9.1f} {base['eager'] / sec:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
