"""Average the weights of checkpoints of one architecture (a "model soup", Wortsman et al. 2022).

Why: a fine-tune from a shipped model can trade one dataset for another (the width-0.5 joint model, fine-tuned in
another batch order: RoadScene better, VIS-NIR worse), and the validation split cannot tell, because VIS-NIR's
country validation images are all but error-free. Models fine-tuned from one checkpoint lie in one basin, so the
average of their weights is a model too, usually between or better than both.

    python scripts/average_checkpoints.py A.pt B.pt --out soup.pt [--weights 0.5,0.5]

Bad input (an unreadable checkpoint, other architectures, weights that do not match the count) gets one line and
exit code 2; the output is written atomically."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from rrl_edge.checkpoint import load_model, save_checkpoint
from rrl_edge.errors import RRLEdgeError


def average(paths: Sequence[Path], weights: Sequence[float], out: Path) -> None:
    """Weighted average of the deployed networks' float tensors (integer buffers from the first)."""
    models = [load_model(p) for p in paths]
    first, _ = models[0]
    for (m, _), p in zip(models[1:], paths[1:]):
        if m.cfg.to_dict() != first.cfg.to_dict():
            raise RRLEdgeError(f"{p}: another architecture than {paths[0]} "
                               f"({m.cfg.to_dict()} vs {first.cfg.to_dict()})")
    states = [m.state_dict() for m, _ in models]
    total = float(sum(weights))
    avg = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            avg[k] = sum(w * s[k].double() for w, s in zip(weights, states)).div(total).to(v.dtype)
        else:
            avg[k] = v.clone()
    first.load_state_dict(avg)
    save_checkpoint(out, first, averaged_from=[str(p) for p in paths], average_weights=[w / total for w in weights])


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", help="comma-separated, one per checkpoint (default: equal)")
    args = ap.parse_args(argv)
    try:
        weights = [1.0] * len(args.checkpoints) if not args.weights else [float(x) for x in args.weights.split(",")]
        if len(weights) != len(args.checkpoints) or min(weights) < 0 or sum(weights) <= 0:
            raise RRLEdgeError(f"--weights {args.weights}: give one non-negative weight per checkpoint")
        if args.out.resolve() in {p.resolve() for p in args.checkpoints}:
            raise RRLEdgeError(f"{args.out}: the output would overwrite an input")
        average(args.checkpoints, weights, args.out)
    except (RRLEdgeError, ValueError) as exc:
        print(f"average_checkpoints: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
