"""CPU speed of an export's models against PyTorch eager: a shortcut to `rrl-edge bench`.

    python benchmarks/ort_speed.py --export-dir D [--batch 1,8,64,256] [--threads N] [--data DIR] [--json F] [--plot F]

Benches the shipped checkpoint (PyTorch eager, the baseline) and whichever of D/rrl.onnx (FP32),
D/rrl.int8.onnx (TensorRT Q/DQ INT8) and D/rrl.int8-cpu.onnx (ONNX Runtime CPU INT8) exist, all in one
run, each in its own process. The table's "x baseline" column is the ratio to PyTorch at the same batch.
A number, not a test: nothing asserts on timings. Everything else is `rrl-edge bench --help`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rrl_edge.checkpoint import SHIPPED
from rrl_edge.cli import main as rrl_edge_main
from rrl_edge.contracts import FP32_ONNX, INT8_CPU_ONNX, INT8_ONNX


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, type=Path, help="a folder written by `rrl-edge export --int8`")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED["vis-nir"], help="the baseline (default: shipped)")
    args, rest = parser.parse_known_args()  # the rest (--batch, --threads, --json, ...) goes to `rrl-edge bench`
    models = [args.export_dir / name for name in (FP32_ONNX, INT8_ONNX, INT8_CPU_ONNX)]
    found = [str(m) for m in models if m.is_file()]
    if not found:
        parser.error(f"{args.export_dir}: none of {FP32_ONNX}, {INT8_ONNX}, {INT8_CPU_ONNX} (run `rrl-edge export --int8`)")
    return rrl_edge_main(["bench", str(args.checkpoint), *found, *rest])


if __name__ == "__main__":
    sys.exit(main())
