"""Seconds per image pair of `rrl-edge register` per artifact (checkpoint, FP32 ONNX, INT8 ONNX), on the same
pairs in one process, with the network's pairs scored per image pair and its pairs/s; prints a table.

    python benchmarks/register_speed.py rrl_edge/weights/rrlnet_visnir.pt deploy/rrl.onnx deploy/rrl.int8.onnx \
        --pairs 2 --keypoints 16

It times the network round on every pair (``--ablate dense-path``): the path whose cost depends on the artifact; pass
``--dense-first`` to time the default pipeline, where pairs on which ECC and template matching agree skip them.

A Jetson estimate (on paper) is pairs scored per image pair / the engine's pairs/s from `rrl-edge bench`, plus the
coarse stage's CPU seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rrl_edge.data.build import default_data_root
from rrl_edge.registration import NETWORK_KEYPOINTS
from rrl_edge.registration.evaluation import timing_pairs
from rrl_edge.registration.pipeline import RegisterConfig, register_images
from rrl_edge.runtime.registry import open_runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--pairs", type=int, default=2,
                    help="validation pairs per dataset (VIS-NIR, RoadScene) timed per artifact")
    ap.add_argument("--keypoints", type=int, default=NETWORK_KEYPOINTS)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dense-first", action="store_true", help="time the default pipeline (dense path first)")
    args = ap.parse_args()
    pairs = timing_pairs(default_data_root(), args.pairs)
    base = RegisterConfig()
    cfg = replace(base, window=replace(base.window, keypoints=args.keypoints), dense_first=args.dense_first)
    rows = []
    for art in args.artifacts:
        opts = {"threads": args.threads} if args.threads else {}
        with open_runner(art, **opts) as runner:
            secs, scored, net = [], [], []
            for vis, other in pairs:
                t = time.perf_counter()
                res = register_images(vis, other, runner, cfg)
                secs.append(time.perf_counter() - t)
                scored.append(res.pairs_scored)
                # the stages that only score network pairs, and the polish's guards (its "refine_network" seconds)
                net.append(sum(v for s, v in res.stages.items()
                               if s in ("network", "dense_check", "confidence", "refine_network")))
            pps = np.sum(scored) / np.sum(net) if np.sum(net) > 0 else float("nan")
            rows.append((Path(art).name, runner.backend, np.mean(secs), np.mean(scored), pps,
                         np.mean([s - n for s, n in zip(secs, net)])))
    print("| artifact | backend | s / image pair | network pairs / image pair | network pairs/s | non-network s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, backend, s, n, pps, rest in rows:
        print(f"| {name} | {backend} | {s:.2f} | {n:.0f} | {pps:.0f} | {rest:.2f} |")


if __name__ == "__main__":
    main()
