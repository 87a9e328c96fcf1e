"""Fine-tuning on pairs the model registered itself, against the same pairs truly aligned.

    python benchmarks/self_registered_finetune.py --json self.json              # VIS-NIR model -> RoadScene
    python benchmarks/self_registered_finetune.py --images 24 --steps 400 --register-model JV/rrl.onnx
    python benchmarks/self_registered_finetune.py --data ../shared/data/vis-nir \
        --init-from rrl_edge/weights/rrlnet_roadscene.pt --runs runs/self-registered-vis-nir   # the other direction

A user with two new cameras has unaligned pairs, and the fine-tuning recipe needs registered ones. This runs both
arms on the same N training images of the new camera pair (the first N of the builder's seeded draw,
`--train-images`' order; VIS-NIR: its aligned training category):

- aligned: the pairs as the dataset has them (symlinked), the recipe README gives for registered pairs;
- self-registered: each other-spectrum image moved by a seeded random similarity and cropped to its content (no black
  fill: two cameras' images, not a warped copy), then `rrl-edge register-folder` with the model that is about to be
  fine-tuned (it has never seen that camera pair), then the same recipe on its output folder.

Each arm: `rrl-edge train --data FOLDER --init-from INIT --test-fraction 0.05 --max-steps S --lr 5e-4`, validated
on the folder's own validation pairs (what a user has), `best.pt` scored on the dataset's fixed test split (true
alignment, default cut). Also reports each self-registered pair's corner error against the truth. Images derived
from the dataset live in a temporary folder and are deleted. Prints a table; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rrl_edge.data.build import PatchConfig  # noqa: E402
from rrl_edge.data.images import read_gray  # noqa: E402
from rrl_edge.data.layouts import detect_layout, get_layout  # noqa: E402
from rrl_edge.registration import geometry as geo  # noqa: E402
from rrl_edge.registration.synthetic import AffineRange, random_affine  # noqa: E402

MOVE = AffineRange(max_rotation=10.0, min_scale=0.85, max_scale=1.15, max_shift=0.1)  # a second camera's view


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rrl_edge.cli", *args], check=True, cwd=ROOT)


def training_pairs(data: Path, n: int, first: int = 0) -> List[Tuple[Path, Path, str]]:
    """n training pairs from the ``first``-th on, in the builder's seeded `--train-images` order: (vis, other, file
    name). VIS-NIR's training category (split None: train or val) is training data too; no test pair is drawn."""
    cfg = PatchConfig()
    jobs = [p for p, split in get_layout(detect_layout(data)).plan(data, cfg.split_settings())
            if split in ("train", None) and p.warp_path is None]
    order = np.random.default_rng((cfg.seed, 1)).permutation(len(jobs))[first:first + n]
    return [(jobs[i].vis_path.resolve(), jobs[i].other_path.resolve(), f"{jobs[i].key.replace('/', '_')}.png")
            for i in order]


def inner_rect(valid: np.ndarray) -> Tuple[int, int, int, int]:
    """An axis-aligned rectangle (x0, y0, x1, y1) holding only valid pixels: shrink the bounding box from the side
    whose edge has the most invalid pixels until none is left."""
    ys, xs = np.nonzero(valid)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    while True:
        bad = {"top": int((~valid[y0, x0:x1]).sum()), "bottom": int((~valid[y1 - 1, x0:x1]).sum()),
               "left": int((~valid[y0:y1, x0]).sum()), "right": int((~valid[y0:y1, x1 - 1]).sum())}
        side = max(bad, key=lambda k: bad[k])
        if bad[side] == 0:
            return x0, y0, x1, y1
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1


def second_camera(other: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """The other image as a second camera sees it: moved by a seeded similarity, cropped to content; returns
    (image, true affine VIS pixel -> its pixel)."""
    h, w = other.shape
    g = random_affine(np.random.default_rng(seed), w, h, MOVE)
    moved = cv2.warpAffine(other, g, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.full_like(other, 255), g, (w, h), flags=cv2.INTER_NEAREST)
    valid = cv2.erode((cover == 255).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    x0, y0, x1, y1 = inner_rect(valid)
    return moved[y0:y1, x0:x1].copy(), geo.compose(geo.translation(-x0, -y0), g)


def _train_and_score(folder: Path, run: Path, args: argparse.Namespace, data: str, tmp: Path) -> Dict[str, float]:
    t0 = time.monotonic()
    _cli("train", "--data", str(folder), "--init-from", args.init_from, "--test-fraction", "0.05",
         "--max-steps", str(args.steps), "--eval-every", str(max(1, args.steps // 4)), "--lr", "5e-4",
         "--warmup-steps", str(min(100, args.steps // 10)), "--threads", "1", "--out-dir", str(run), "--overwrite",
         "--quiet")
    minutes = (time.monotonic() - t0) / 60
    out = tmp / f"{run.name}.json"
    _cli("eval", "--data", data, "--model", str(run / "best.pt"), "--json", str(out), "--quiet")
    val = min(h["val_fpr95"] for h in json.loads((run / "curve.json").read_text())["history"])
    return {"test_fpr95": float(json.loads(out.read_text())["mean_fpr95"]), "best_val_fpr95": float(val),
            "minutes": round(minutes, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "roadscene"), help="the new camera pair")
    p.add_argument("--init-from", default=str(ROOT / "rrl_edge" / "weights" / "rrlnet_visnir.pt"))
    p.add_argument("--register-model", help="what registers the pairs (default: --init-from; an ONNX export of it "
                                            "is faster)")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--first", type=int, default=0, help="skip this many images of the draw (another sample)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--runs", default=str(ROOT / "runs" / "self-registered"))
    p.add_argument("--arms", default="aligned,self-registered")
    p.add_argument("--json")
    args = p.parse_args(argv)
    data = Path(args.data)
    runs = Path(args.runs)
    rows: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pairs = training_pairs(data, args.images, args.first)
        aligned, unaligned = tmp / "aligned", tmp / "unaligned"
        truth: Dict[str, np.ndarray] = {}
        for sub in ("vis", "other"):
            (aligned / sub).mkdir(parents=True)
            (unaligned / sub).mkdir(parents=True)
        for i, (vis, other, name) in enumerate(pairs):  # the pairs layout pairs files by name
            (aligned / "vis" / name).symlink_to(vis)
            (aligned / "other" / name).symlink_to(other)
            (unaligned / "vis" / name).symlink_to(vis)
            moved, g = second_camera(read_gray(other), seed=args.first + i)
            cv2.imwrite(str(unaligned / "other" / name), moved)
            truth[Path(name).stem] = g
        if "self-registered" in args.arms:
            reg = runs / "registered"
            t0 = time.monotonic()
            _cli("register-folder", str(unaligned), "--out-dir", str(reg), "--model",
                 args.register_model or args.init_from, "--threads", "1", "--quiet")
            reg_minutes = (time.monotonic() - t0) / 60
            manifest = json.loads((reg / "REGISTRATION.json").read_text())
            errors = []
            for row in manifest["pairs"]:
                stem = Path(row["name"]).stem
                if row["status"] == "sure":
                    h, w = read_gray(unaligned / "vis" / row["name"]).shape
                    errors.append(geo.corner_error(np.array(row["registration"]["affine"]), truth[stem], w, h))
            e = np.array(errors)
            kept = manifest["counts"]["sure"]
            print(f"self-registration: {kept} of {len(pairs)} pairs kept, corner error median {np.median(e):.2f} px, "
                  f"max {e.max():.2f} px, {int((e > 5).sum())} beyond 5 px ({reg_minutes:.1f} min)", flush=True)
            rows["registration"] = {"kept": kept, "of": len(pairs), "median_px": float(np.median(e)),
                                    "max_px": float(e.max()), "beyond_5px": int((e > 5).sum()),
                                    "minutes": round(reg_minutes, 1)}
            rows["self-registered"] = _train_and_score(reg, runs / "self-registered", args, args.data, tmp)
            print(f"self-registered: {rows['self-registered']}", flush=True)
        if "aligned" in args.arms:
            rows["aligned"] = _train_and_score(aligned, runs / "aligned", args, args.data, tmp)
            print(f"aligned: {rows['aligned']}", flush=True)
    print(f"\n{'arm':<16} {'test FPR95':>10} {'best val FPR95':>15} {'minutes':>8}")
    for arm in ("aligned", "self-registered"):
        if arm in rows:
            r = rows[arm]
            print(f"{arm:<16} {r['test_fpr95']:>10.2f} {r['best_val_fpr95']:>15.2f} {r['minutes']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": args.images, "steps": args.steps, "init_from": args.init_from,
                                               **rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
