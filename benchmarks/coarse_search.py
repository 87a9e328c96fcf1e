"""How good the coarse search alone is (no network): for each register-eval pair, the corner error of the best
coarse hypothesis and of the best of those kept, under several first-level settings, with seconds per pair.

Why: the network rounds only look a few pixels around a hypothesis, so a pair whose hypotheses are all far off is
lost before the network runs; this measures what a larger first level or more kept winners buy, per data set.

Settings are chosen on the validation pairs (`--split val`, the default: training images under random affines, each
scored against its re-measured truth where that can be confirmed, as `register-eval --split val` does); `--split
test` scores the test pairs.

    python benchmarks/coarse_search.py --data ../shared/data/roadscene
    python benchmarks/coarse_search.py --data ../shared/data/vis-nir --limit 10 --settings 256:3,384:6
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from rrl_edge.registration import SPLITS
from rrl_edge.registration import geometry as geo
from rrl_edge.registration.coarse import CoarseConfig, coarse_align
from rrl_edge.registration.evaluation import count_pairs, eval_pairs, remeasured_truth


def _setting(text: str) -> Tuple[str, CoarseConfig]:
    """'default', or 'SIDE:KEEP' applied to every image size."""
    if text == "default":
        return text, CoarseConfig()
    side, keep = (int(v) for v in text.split(":"))
    cfg = dataclasses.replace(CoarseConfig(), small_side=side, keep=keep, small_image_side=side, small_image_keep=keep)
    return f"{side} px, keep {keep}", cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="pairs per category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=SPLITS, default="val", help="val (default): what settings are chosen on")
    ap.add_argument("--settings", default="default,256:3,384:6", help="comma-separated: default or SIDE:KEEP")
    args = ap.parse_args()
    settings = [_setting(s) for s in args.settings.split(",")]
    rows: Dict[str, Dict[str, List[float]]] = {name: {"top1": [], "any": [], "s": []} for name, _ in settings}
    total = count_pairs(args.data, args.limit, args.split)
    for pair in tqdm(eval_pairs(args.data, args.limit, args.seed, args.split), total=total, desc="pairs"):
        h, w = pair.vis.shape
        truth = remeasured_truth(pair)
        truth = pair.gt if truth is None else truth
        for name, cfg in settings:
            t0 = time.perf_counter()
            hyps = coarse_align(pair.vis, pair.other, cfg)
            rows[name]["s"].append(time.perf_counter() - t0)
            errs = [geo.corner_error(x.affine, truth, w, h) for x in hyps]
            rows[name]["top1"].append(errs[0])
            rows[name]["any"].append(min(errs))
    print(f"\ncoarse search on {total} {args.split} pairs of {args.data} (corner error, % of pairs; seconds per pair)\n")
    print("| first level | best within 10 px | best within 25 px | any kept within 25 px | median best px | s / pair |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        top1, anyk = np.array(r["top1"]), np.array(r["any"])
        print(f"| {name} | {100 * np.mean(top1 < 10):.1f} | {100 * np.mean(top1 < 25):.1f} | "
              f"{100 * np.mean(anyk < 25):.1f} | {np.median(top1):.2f} | {np.mean(r['s']):.2f} |")


if __name__ == "__main__":
    main()
