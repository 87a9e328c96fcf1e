"""ONNX Runtime (CPU) speed of an export's FP32, TensorRT Q/DQ INT8 and CPU INT8 models on real pairs.

    python benchmarks/ort_speed.py --export-dir D [--pairs 2048] [--batch 256] [--threads N] [--repeats 5]

Prints pairs per second (median of the repeats) and the ratio to FP32. The Q/DQ model is meant for
TensorRT; on a CPU without VNNI its symmetric int8 is not expected to be faster. A number, not a test:
nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from rrl_edge.export.artifacts import FP32_ONNX, INT8_CPU_ONNX, INT8_ONNX
from rrl_edge.export.ort_scoring import cpu_session, score_onnx


def real_pairs(count: int, seed: int = 0) -> np.ndarray:
    """``count`` VIS-NIR test pairs, spread over the categories."""
    from rrl_edge.data.build import PatchConfig, default_data_root
    from rrl_edge.export.parity import proof_sets
    from rrl_edge.patch_sources import load_sets

    sets, _ = load_sets(default_data_root() / "vis-nir", "test", PatchConfig(), progress=False)
    chosen = proof_sets(sets, max(2, count // len(sets)), seed)
    return np.concatenate([ps.patches for ps in chosen.values()])[:count]


def pairs_per_second(model: Path, pairs: np.ndarray, batch: int, threads: int, repeats: int) -> float:
    session = cpu_session(model, threads)
    score_onnx(session, pairs[:batch], batch)  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_onnx(session, pairs, batch)
        times.append(time.perf_counter() - start)
    return len(pairs) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, type=Path, help="a folder written by `rrl-edge export --int8`")
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    pairs = real_pairs(args.pairs)
    rows = []
    for label, name in (("FP32", FP32_ONNX), ("INT8 Q/DQ (TensorRT)", INT8_ONNX), ("INT8 CPU", INT8_CPU_ONNX)):
        path = args.export_dir / name
        if path.is_file():
            rows.append((label, name, pairs_per_second(path, pairs, args.batch, args.threads, args.repeats)))
    base = rows[0][2]
    print(f"ONNX Runtime CPU, {len(pairs)} real pairs, batch {args.batch}, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'model':<22} {'file':<20} {'pairs/s':>9} {'ms/pair':>8} {'vs FP32':>8}")
    for label, name, speed in rows:
        print(f"{label:<22} {name:<20} {speed:>9.0f} {1000 / speed:>8.3f} {speed / base:>7.2f}x")


if __name__ == "__main__":
    main()
