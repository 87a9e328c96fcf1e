"""Where `rrl-edge register`'s confidence threshold comes from: validation pairs, never the test pairs.

Positives: the training images of both sets, aligned pairs moved by a seeded random affine (the test protocol's
own generator, rrl_edge.registration.synthetic): VIS-NIR's country category (the training category; every test
category is left alone) and RoadScene's training split. Negatives: unrelated scenes (the VIS image of one pair
with the other image of another, within a set and across the two sets) and independent noise images. Each pair is
registered with the default settings; for every answer the confidence (rrl_edge.registration.confidence) is
measured. Prints the contrast of right answers (corner error <= 5 px), wrong answers and unrelated pairs, the
threshold in the middle of the gap between unrelated pairs and right answers, and what it refuses.

    python benchmarks/register_confidence.py --json confidence.json    # about 20 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rrl_edge.data.images import list_visnir_category, read_gray  # noqa: E402
from rrl_edge.errors import RRLEdgeError  # noqa: E402
from rrl_edge.registration import confidence as conf  # noqa: E402
from rrl_edge.registration import geometry as geo  # noqa: E402
from rrl_edge.registration.evaluation import roadscene_split  # noqa: E402
from rrl_edge.registration.pipeline import RegisterConfig, register_images  # noqa: E402
from rrl_edge.registration.synthetic import synthetic_pair  # noqa: E402

RIGHT_PX = 5.0  # corner error of a right answer (register-eval's success@5)
Pair = Tuple[str, str, np.ndarray, np.ndarray, np.ndarray]  # group, name, vis, other, truth (zeros: unrelated)


def _spread(items: list, n: int) -> list:
    if n >= len(items):
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def aligned_pairs(data: Path, n_country: int, n_roadscene: int) -> Dict[str, List[Tuple[str, np.ndarray, np.ndarray]]]:
    """Aligned training pairs of both sets: VIS-NIR country, RoadScene's training split."""
    country = _spread(list_visnir_category(data / "vis-nir" / "country"), n_country)
    road = _spread(roadscene_split(data / "roadscene", "val"), n_roadscene)  # register-eval --split val's images
    return {"vis-nir country": [(p.pair_id, read_gray(p.vis_path), read_gray(p.other_path)) for p in country],
            "roadscene train": [(p.pair_id, read_gray(p.vis_path), read_gray(p.other_path)) for p in road]}


def validation_pairs(sets: Dict[str, List[Tuple[str, np.ndarray, np.ndarray]]], n_unrelated: int, n_noise: int,
                     seed: int) -> Iterator[Pair]:
    k = 0
    for group, pairs in sets.items():
        for name, vis, other in pairs:
            moved, truth = synthetic_pair(vis, other, seed * 100003 + k)
            k += 1
            yield group, name, vis, moved, truth
    pool = [(g, name, vis, other) for g, ps in sets.items() for name, vis, other in ps]
    rng = np.random.default_rng(seed)
    for i in range(n_unrelated):
        a, b = rng.choice(len(pool), 2, replace=False)
        ga, na, vis, _ = pool[a]
        gb, nb, _, other = pool[b]
        moved, _ = synthetic_pair(vis, other, seed * 100003 + 50000 + i) if other.shape == vis.shape else (other, None)
        yield "unrelated", f"{ga}:{na} vs {gb}:{nb}", vis, moved, np.zeros((2, 3))
    import cv2

    for i in range(n_noise):
        g = np.random.default_rng(seed + 1000 + i)
        vis = cv2.GaussianBlur(g.integers(0, 256, (512, 640)).astype(np.float32), (0, 0), 1.5)
        other = cv2.GaussianBlur(g.integers(0, 256, (512, 640)).astype(np.float32), (0, 0), 1.5)
        norm = lambda x: cv2.normalize(x, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # noqa: E731
        yield "noise", f"noise {i}", norm(vis), norm(other), np.zeros((2, 3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--engine", help="default: the shipped model exported to FP32 ONNX in a temporary folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--country", type=int, default=20)
    ap.add_argument("--roadscene", type=int, default=20)
    ap.add_argument("--unrelated", type=int, default=20)
    ap.add_argument("--noise", type=int, default=6)
    ap.add_argument("--rows", help="tabulate a saved --json instead of registering again")
    ap.add_argument("--seed", type=int, default=7, help="not register-eval's test seed (0)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())["rows"]
        return tabulate(rows, list(dict.fromkeys(r["group"] for r in rows if r["group"] not in ("unrelated", "noise"))))
    from rrl_edge.runtime.registry import open_runner, runner_options

    with tempfile.TemporaryDirectory() as tmp:
        engine = args.engine
        if engine is None:
            from rrl_edge.checkpoint import load_model, shipped_checkpoint
            from rrl_edge.export.onnx_export import export_onnx

            engine = str(Path(tmp) / "rrl.onnx")
            export_onnx(load_model(shipped_checkpoint())[0], Path(engine))
        sets = aligned_pairs(Path(args.data), args.country, args.roadscene)
        total = sum(len(v) for v in sets.values()) + args.unrelated + args.noise
        rows: List[Dict[str, object]] = []
        with open_runner(engine, "auto", **runner_options(engine, "auto", threads=args.threads)) as runner:
            for group, name, vis, other, truth in tqdm(validation_pairs(sets, args.unrelated, args.noise, args.seed),
                                                       total=total, desc="validation pairs", unit="pair"):
                t = time.perf_counter()
                row: Dict[str, object] = {"group": group, "pair": name}
                try:
                    res = register_images(vis, other, runner, RegisterConfig())
                    c = res.confidence
                    assert c is not None  # measured whenever a runner scored the answer
                    row.update(c.to_json(), inliers=res.inliers, path=res.path)
                    if group not in ("unrelated", "noise"):
                        row["error"] = geo.corner_error(res.affine, truth, vis.shape[1], vis.shape[0])
                except RRLEdgeError as exc:
                    row["failed"] = str(exc)[:200]
                row["seconds"] = round(time.perf_counter() - t, 2)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=1))
    return tabulate(rows, list(sets))


def choose_threshold(right: List[float], unrelated: List[float]) -> float:
    """The middle of the gap between the highest contrast of an unrelated pair and the lowest of a right answer
    (the widest margin on both sides), to two decimals."""
    if not right or not unrelated or max(unrelated) >= min(right):
        raise SystemExit("no gap between unrelated pairs and right answers: no threshold separates them")
    return round((max(unrelated) + min(right)) / 2, 2)


def tabulate(rows: List[Dict[str, object]], groups: List[str]) -> int:
    """The table and the threshold of a run (also from a saved --json: --rows)."""
    right = [r for r in rows if "error" in r and float(r["error"]) <= RIGHT_PX]  # type: ignore[arg-type]
    wrong = [r for r in rows if "error" in r and float(r["error"]) > RIGHT_PX]  # type: ignore[arg-type]
    unrelated = [r for r in rows if r["group"] in ("unrelated", "noise") and "contrast" in r]
    threshold = choose_threshold([float(r["contrast"]) for r in right],  # type: ignore[arg-type]
                                 [float(r["contrast"]) for r in unrelated])  # type: ignore[arg-type]

    def row_of(name: str, sel: List[Dict[str, object]]) -> str:
        c = np.array([float(r["contrast"]) for r in sel], np.float64)  # type: ignore[arg-type]
        if not len(c):
            return f"| {name} | 0 | | | | |"
        return (f"| {name} | {len(c)} | {c.min():+.3f} | {np.median(c):+.3f} | {c.max():+.3f} | "
                f"{100 * np.mean(c < threshold):.0f} % |")

    failed = {g: sum(1 for r in rows if r["group"] == g and "failed" in r) for g in dict.fromkeys(r["group"] for r in rows)}
    print(f"registration failed outright (exit 1 already): {failed}")
    print(f"\n| answers | n | min contrast | median | max | refused at {threshold:.2f} |\n|---|---:|---:|---:|---:|---:|")
    print(row_of("right (<= 5 px), both sets", right))
    for g in groups:
        print(row_of(f"right, {g}", [r for r in right if r["group"] == g]))
    print(row_of("wrong (> 5 px)", wrong))
    print(row_of("unrelated scenes", [r for r in unrelated if r["group"] == "unrelated"]))
    print(row_of("noise", [r for r in unrelated if r["group"] == "noise"]))
    print(f"\nthreshold: {threshold:.2f}, the middle of the gap between unrelated pairs and right answers "
          f"(rrl_edge.registration.confidence.MIN_CONTRAST is {conf.MIN_CONTRAST:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
