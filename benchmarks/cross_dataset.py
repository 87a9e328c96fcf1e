"""Every shipped model on every dataset's test split, under several cutting protocols: one FPR95 table.

    python benchmarks/cross_dataset.py [--json cross.json] [--cells visnir:vis-nir:uniform-far,...]

Cells are model:dataset:protocol (protocol = keypoint sampling - negatives, see rrl_edge/data/protocol.py);
model is a shipped model's short name (visnir, roadscene, joint) or a checkpoint path ending in .pt.
Each cell is what `rrl-edge eval --data ../shared/data/DATASET --model rrl_edge/weights/rrlnet_MODEL.pt
--keypoint-sampling S --negatives N` reports (same builds, same FPR95 code), scored with ONNX Runtime FP32
(within 1e-5 of PyTorch, so the FPR95 is PyTorch's) because it is ~2.5x faster on a busy 2-core CPU. Test
pairs depend only on the val/test options, so builds made here use 16 training keypoints per image (fast)
unless the default build is already cached. Prints a table; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Dict


from rrl_edge.atomic import write_json
from rrl_edge.checkpoint import load_model, shipped_checkpoint
from rrl_edge.data.build import PatchConfig, dataset_key, default_data_root, ensure_dataset, load_split, read_manifest
from rrl_edge.fpr95_table import FPR95Table
from rrl_edge.runtime.registry import score_with

DEFAULT_CELLS = ",".join(
    f"{m}:{d}:{p}"
    for p in ("uniform-far", "strongest-far", "uniform-near")
    for d in ("vis-nir", "roadscene")
    for m in ("visnir", "roadscene")
)


def _build(data: Path, sampling: str, negatives: str) -> Path:
    cfg = PatchConfig(keypoint_sampling=sampling, negatives=negatives)
    import os

    cache = Path(os.environ.get("RRL_EDGE_CACHE") or Path.home() / ".cache" / "rrl-edge" / "patches")
    full = cache / f"{data.name}-{dataset_key(data, cfg)}"
    try:
        read_manifest(full)
        return full
    except Exception:
        return ensure_dataset(data, replace(cfg, train_keypoints_per_image=16), progress=True)


def _checkpoint(model_name: str) -> Path:
    """A shipped model by its short name (visnir, roadscene, joint) or any checkpoint file (a .pt path)."""
    if model_name.endswith(".pt"):
        return Path(model_name)
    return shipped_checkpoint({"visnir": "vis-nir"}.get(model_name, model_name))


def _onnx(model_name: str, work: Path) -> Path:
    from rrl_edge.export.onnx_export import export_onnx

    path = work / f"{abs(hash(model_name))}.onnx"
    if not path.is_file():
        export_onnx(load_model(_checkpoint(model_name))[0], path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default=DEFAULT_CELLS)
    ap.add_argument("--json", type=Path, help="write every cell here (updated after each cell)")
    args = ap.parse_args()
    root = default_data_root()
    work = Path(tempfile.mkdtemp(prefix="rrl-cross-"))
    results: Dict[str, Dict[str, object]] = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    for cell in args.cells.split(","):
        if cell in results:
            continue
        model, dataset, proto = cell.split(":")
        sampling, negatives = proto.split("-")
        sets = load_split(_build(root / dataset, sampling, negatives), "test")
        onnx = _onnx(model, work)
        scores = {name: score_with(onnx, ps.patches, desc=f"{cell} {name}", show_progress=True)
                  for name, ps in sets.items()}
        table = FPR95Table.from_scores({name: ps.labels for name, ps in sets.items()}, scores, proto)
        results[cell] = {**table.to_json(), "pairs": table.pairs}  # an FPR95Table (rrl_edge.fpr95_table) + pairs
        print(f"{cell:<36} mean FPR95 {table.mean_fpr95:6.2f}  "
              + " ".join(f"{k} {v:.2f}" for k, v in table.fpr95_by_category().items()), flush=True)
        if args.json:
            write_json(results, args.json)
    print(f"\n{'model':<24} {'dataset':<10} {'protocol':<14} {'pairs':>7} {'mean FPR95':>10}")
    for cell, r in results.items():
        m, d, p = cell.split(":")
        print(f"{m:<24} {d:<10} {p:<14} {r['pairs']:>7} {r['mean_fpr95']:>10.2f}")


if __name__ == "__main__":
    main()
