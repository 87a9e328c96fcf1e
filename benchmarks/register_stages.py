"""Where `rrl-edge register`'s time goes: seconds per image pair and per stage at fixed image sizes.

Validation pairs (`register-eval --split val`: VIS-NIR country images and RoadScene training images under random
affines, no test pair) are cropped to the aspect of each size and resized to it (640x512 and 1280x1024 by default,
the two sizes thermal cores and their visible partners come in) and registered with the default settings through
one artifact. Prints one row per size: seconds per image pair, the mean seconds of each stage (the pipeline's own
`stages`: the confidence check is the dense path's check, or its own stage after the network round), and the
network pairs per image pair (what an engine multiplies by its pairs/s).

    python benchmarks/register_stages.py --model deploy/rrl.onnx --threads 2 --pairs 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rrl_edge.errors import RRLEdgeError  # noqa: E402
from rrl_edge.registration.evaluation import timing_pairs  # noqa: E402
from rrl_edge.registration.pipeline import RegisterConfig, register_images  # noqa: E402
from rrl_edge.runtime.registry import open_runner, runner_options  # noqa: E402

STAGES = ("coarse", "dense", "dense_check", "classical", "network", "refine", "confidence")


def _size(text: str) -> tuple:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _fit(img: np.ndarray, size: tuple) -> np.ndarray:
    """The centre crop of ``img`` with the aspect of ``size``, resized to it: one scale for both axes, so that the
    pair's geometry stays a similarity (a plain resize would stretch one axis more than the other)."""
    w, h = size
    ih, iw = img.shape[:2]
    cw, ch = (iw, round(iw * h / w)) if iw * h <= ih * w else (round(ih * w / h), ih)
    x0, y0 = (iw - cw) // 2, (ih - ch) // 2
    return cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], size, interpolation=cv2.INTER_AREA)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="artifact to run (default: the shipped model exported to FP32 ONNX)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sizes", default="640x512,1280x1024")
    ap.add_argument("--pairs", type=int, default=4, help="validation pairs per dataset and size")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from rrl_edge.checkpoint import load_model, shipped_checkpoint
            from rrl_edge.export.onnx_export import export_onnx

            model = str(Path(tmp) / "rrl.onnx")
            export_onnx(load_model(shipped_checkpoint())[0], Path(model))
        pairs = timing_pairs(Path(args.data), args.pairs)
        rows = []
        with open_runner(model, "auto", **runner_options(model, "auto", threads=args.threads)) as runner:
            for size in (_size(s) for s in args.sizes.split(",")):
                seconds: List[float] = []
                stages: Dict[str, List[float]] = {s: [] for s in STAGES}
                scored: List[int] = []
                failed = 0
                for vis, other in pairs:
                    vis_s, other_s = _fit(vis, size), _fit(other, size)
                    t = time.perf_counter()
                    try:
                        res = register_images(vis_s, other_s, runner, RegisterConfig())
                        for s in STAGES:
                            stages[s].append(res.stages.get(s, 0.0))
                        scored.append(res.pairs_scored)
                    except RRLEdgeError:
                        failed += 1
                    seconds.append(time.perf_counter() - t)
                rows.append((f"{size[0]}x{size[1]}", np.mean(seconds), np.median(seconds),
                             {s: np.mean(v) if v else 0.0 for s, v in stages.items()},
                             np.mean(scored) if scored else float("nan"), failed, len(pairs)))
    print(f"{Path(model).name}, {args.threads} threads, {len(pairs)} validation pairs per size")
    print("| size | s / pair | median s / pair | " + " | ".join(STAGES) + " | network pairs / pair | failed |")
    print("|---|---:|---:|" + "---:|" * len(STAGES) + "---:|---:|")
    for size, s, med, st, n, failed, total in rows:
        print(f"| {size} | {s:.2f} | {med:.2f} | " + " | ".join(f"{st[k]:.2f}" for k in STAGES)
              + f" | {n:.0f} | {failed}/{total} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
