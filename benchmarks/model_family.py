"""The model family's cost side: parameters, GFLOPs and ONNX Runtime CPU pairs/s of each width, one table.

    python benchmarks/model_family.py [--widths 0.25,0.5,1.0] [--threads 1] [--batch 256]

Each width is exported to FP32 ONNX from a seeded random initialisation (time does not depend on the weights; a
width without a trained model is still measured) and timed by `rrl-edge bench`, every width in its own process
under the same settings, so the ratios against the first width hold on a machine whose load varies between runs.
FPR95 per width comes from `rrl-edge eval` / benchmarks/cross_dataset.py on the trained checkpoints (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rrl_edge.export.onnx_export import export_onnx
from rrl_edge.models.complexity import model_info
from rrl_edge.models.rrlnet import build_rrlnet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="0.25,0.5,1.0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    widths = [float(w) for w in args.widths.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rrl-family-"))
    paths = []
    for w in widths:
        torch.manual_seed(0)
        path = work / f"rrl_w{w:g}.onnx"
        export_onnx(build_rrlnet(w).eval(), path)
        paths.append(str(path))
    out = work / "bench.json"
    subprocess.run([sys.executable, "-m", "rrl_edge.cli", "bench", *paths, "--batch", str(args.batch),
                    "--threads", str(args.threads), "--seconds", str(args.seconds), "--json", str(out), "--quiet"],
                   check=True)
    by_path = {r["artifact"]: r for r in json.loads(out.read_text())["results"]}
    print(f"\nONNX Runtime FP32 on the CPU, batch {args.batch}, {args.threads} thread(s); ratios against width {widths[0]:g}\n")
    print("| width | parameters (deployed) | GFLOPs / pair | pairs/s | vs first |")
    print("|---:|---:|---:|---:|---:|")
    base = float(by_path[paths[0]]["pairs_per_s"])
    for w, p in zip(widths, paths):
        info = model_info(w)
        rate = float(by_path[p]["pairs_per_s"])
        print(f"| {w:g} | {int(info['deploy_params']):,} | {info['deploy_gflops_per_pair']:.3f} | {rate:,.0f} | "
              f"{rate / base:.2f}x |")


if __name__ == "__main__":
    main()
