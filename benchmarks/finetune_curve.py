"""Fine-tuning curve for a new camera pair: a shipped model fine-tuned on N training images of another dataset.

    python benchmarks/finetune_curve.py                       # VIS-NIR model -> RoadScene, N = 0, 5, 20, 80
    python benchmarks/finetune_curve.py --images 5,20 --steps 300 --json ft.json --plot ft.png

Each point is the recipe README gives a user with their own cameras, run through the command line as they would:
`rrl-edge train --data DIR --train-images N --init-from CKPT --max-steps S`, then `rrl-edge eval --data DIR
--model RUN/best.pt` on the dataset's fixed test split (N = 0 is the model as shipped). Every N gets the same
number of steps, so the points differ only in how many images the pairs come from (the smaller draws are subsets
of the larger ones: PatchConfig.train_images). Prints a table; --plot writes test FPR95 against N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rrl_edge.cli", *args], check=True, cwd=ROOT)


def _eval(data: str, checkpoint: str, out: Path) -> float:
    _cli("eval", "--data", data, "--model", checkpoint, "--json", str(out), "--quiet")
    return float(json.loads(out.read_text())["mean_fpr95"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "roadscene"), help="the new camera pair")
    p.add_argument("--init-from", default=str(ROOT / "rrl_edge" / "weights" / "rrlnet_visnir.pt"))
    p.add_argument("--images", default="5,20,80", help="training images per point (comma-separated)")
    p.add_argument("--steps", type=int, default=600, help="training steps of 64 pairs at every point")
    p.add_argument("--lr", default="5e-4")
    p.add_argument("--runs", default=str(ROOT / "runs" / "finetune"), help="where the runs are kept")
    p.add_argument("--json")
    p.add_argument("--plot")
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = _eval(args.data, args.init_from, Path(tmp) / "base.json")
        rows.append({"images": 0, "test_fpr95": base, "minutes": 0.0, "val_fpr95": None})
        print(f"N = 0 (as shipped): test FPR95 {base:.2f}", flush=True)
        for n in (int(x) for x in args.images.split(",")):
            run = Path(args.runs) / f"n{n}"
            t0 = time.monotonic()
            _cli("train", "--data", args.data, "--train-images", str(n), "--init-from", args.init_from,
                 "--max-steps", str(args.steps), "--eval-every", str(max(1, args.steps // 4)), "--lr", args.lr,
                 "--warmup-steps", str(min(100, args.steps // 10)), "--out-dir", str(run), "--overwrite", "--quiet")
            minutes = (time.monotonic() - t0) / 60
            curve = json.loads((run / "curve.json").read_text())
            test = _eval(args.data, str(run / "best.pt"), Path(tmp) / f"n{n}.json")
            rows.append({"images": n, "test_fpr95": test, "minutes": round(minutes, 1),
                         "val_fpr95": curve["best_val_fpr95"]})
            print(f"N = {n}: test FPR95 {test:.2f} (best val {curve['best_val_fpr95']:.2f}, {minutes:.1f} min)", flush=True)

    print(f"\nfine-tuning {Path(args.init_from).name} on {Path(args.data).name}, {args.steps} steps of 64 pairs each")
    print("| training images | test FPR95 (%) | best val FPR95 (%) | minutes |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        val = "-" if r["val_fpr95"] is None else f"{r['val_fpr95']:.2f}"
        print(f"| {r['images']} | {r['test_fpr95']:.2f} | {val} | {r['minutes']} |")
    report = {"init_from": args.init_from, "data": args.data, "steps": args.steps, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([max(r["images"], 1) for r in rows], [r["test_fpr95"] for r in rows], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("training images of the new camera pair (1 = none, as shipped)")
        ax.set_ylabel("test FPR95 (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"fine-tuning {Path(args.init_from).stem} on {Path(args.data).name}")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
