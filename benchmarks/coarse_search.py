"""How good the coarse search alone is (no network): for each register-eval pair, the corner error of the best
coarse hypothesis and of the best of those kept, under several first-level settings, with seconds per pair.

Why: the network rounds only look a few pixels around a hypothesis, so a pair whose hypotheses are all far off is
lost before the network runs; this measures what a larger first level or more kept winners buy, per data set.

Settings are chosen on the validation pairs (`--split val`, the default: training images under random affines, each
scored against its re-measured truth where that can be confirmed, as `register-eval --split val` does); `--split
test` scores the test pairs.

    python benchmarks/coarse_search.py --data ../shared/data/roadscene
    python benchmarks/coarse_search.py --data ../shared/data/vis-nir --limit 10 --settings 256:3,384:6
    python benchmarks/coarse_search.py --data ../shared/data/roadscene --settings default,fine_side=448
"""

from __future__ import annotations

import argparse
import ast
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
    """'default', 'SIDE:KEEP' applied to every image size, or CoarseConfig fields set as 'FIELD=VALUE+...'
    (Python literals, for example 'fine_side=448' or 'fine_steps=((1.0,0.025),)')."""
    if text == "default":
        return text, CoarseConfig()
    if "=" in text:
        fields = [f.name for f in dataclasses.fields(CoarseConfig)]
        changes = {}
        for item in text.split("+"):
            key, _, value = item.partition("=")
            if key not in fields:
                raise SystemExit(f"coarse_search: no CoarseConfig field {key!r} (fields: {', '.join(fields)})")
            try:
                changes[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise SystemExit(f"coarse_search: {item!r}: the value is not a Python literal") from None
        return text, dataclasses.replace(CoarseConfig(), **changes)
    side, keep = (int(v) for v in text.split(":"))
    cfg = dataclasses.replace(CoarseConfig(), small_side=side, keep=keep, small_image_side=side, small_image_keep=keep)
    return f"{side} px, keep {keep}", cfg


def _split(text: str) -> List[str]:
    """The comma-separated settings, commas inside parentheses kept (tuple values)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="pairs per category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=SPLITS, default="val", help="val (default): what settings are chosen on")
    ap.add_argument("--settings", default="default,256:3,384:6",
                    help="comma-separated: default, SIDE:KEEP or FIELD=VALUE+FIELD=VALUE")
    args = ap.parse_args()
    settings = [_setting(s) for s in _split(args.settings)]
    rows: Dict[str, Dict[str, List[float]]] = {name: {"top1": [], "top2": [], "any": [], "s": []}
                                               for name, _ in settings}
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
            rows[name]["top2"].append(min(errs[:2]))
            rows[name]["any"].append(min(errs))
    print(f"\ncoarse search on {total} {args.split} pairs of {args.data} (corner error, % of pairs; seconds per pair)\n")
    print("| setting | best within 4 px | best within 10 px | best within 25 px | one of the best two within 10 px "
          "| any kept within 25 px | median best px | s / pair |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        top1, top2, anyk = np.array(r["top1"]), np.array(r["top2"]), np.array(r["any"])
        print(f"| {name} | {100 * np.mean(top1 < 4):.1f} | {100 * np.mean(top1 < 10):.1f} | {100 * np.mean(top1 < 25):.1f} | "
              f"{100 * np.mean(top2 < 10):.1f} | {100 * np.mean(anyk < 25):.1f} | {np.median(top1):.2f} | "
              f"{np.mean(r['s']):.2f} |")


if __name__ == "__main__":
    main()
