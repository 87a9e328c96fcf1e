"""Leave-one-dataset-out (LODO): train on one camera pair, test on the other, one row per training variant.

    python benchmarks/lodo.py --json runs/lodo/lodo.json                       # every variant, both directions
    python benchmarks/lodo.py --variants none,all --directions vis-nir --steps 600 --jobs 2
    python benchmarks/lodo.py --cells vis-nir:remap,roadscene:synthetic+curve

A variant is a set of `rrl-edge train` options (modality randomization families, synthetic pairs, ...). Every
variant of a direction starts from the same weights (the single-dataset model of the source data, which has
never seen the other dataset), trains the same number of steps with the same seed, batch order and schedule, and is
scored by its final weights (`last.pt`: no checkpoint is picked on any test split, nor on the target dataset's
validation split). So a variant's effect is the difference between its row and the `none` row. Each run is the
command a user types:

    rrl-edge train --data ../shared/data/SOURCE --init-from rrl_edge/weights/rrlnet_SOURCE.pt --max-steps S --lr 2e-4 --warmup-steps 50 \
        --threads 1 --eval-every S --out-dir runs/lodo/SOURCE-VARIANT [variant options]

then both test splits (default uniform cut) are scored with ONNX Runtime FP32 (within 1e-5 of `rrl-edge eval`).
Cells already in --json are not run again. Prints a table; nothing
here asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

from rrl_edge.contracts import POLARITY_AS_IS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = ("vis-nir", "roadscene")
FAMILIES = ("curve", "remap", "invert", "field", "thermal", "jpeg")
WEIGHTS = ROOT / "rrl_edge" / "weights"
INIT = {"vis-nir": WEIGHTS / "rrlnet_visnir.pt", "roadscene": WEIGHTS / "rrlnet_roadscene.pt"}  # each saw one set


def synthetic_folder(source: str, runs: Path) -> Path:
    """Synthetic pairs rendered from the source dataset's training-split VIS images (made once per source)."""
    out = runs / f"synthetic-{source}"
    if not (out / "SYNTHETIC.json").is_file():
        subprocess.run([sys.executable, "-m", "rrl_edge.cli", "data", "synth", "--from", str(DATA / source),
                        "--out-dir", str(out), "--quiet"], check=True, cwd=ROOT)
    return out


def variant_options(name: str, prob: float, source: str, runs: Path) -> List[str]:
    """`rrl-edge train` options of a variant: none, a modality family, 'all', 'synthetic', 'orderN' (batch order N
    instead of the seed's, which tells a variant's effect from run-to-run noise), joined by '+'."""
    opts: List[str] = []
    families: List[str] = []  # one --modality with all of them: repeating the flag would keep only the last
    for part in name.split("+"):
        if part == "none":
            continue
        if part.startswith("order") and part[5:].isdigit():  # the same variant in another batch order: noise
            opts += ["--order-seed", part[5:]]
        elif part == "synthetic":
            opts += ["--data", str(synthetic_folder(source, runs))]
        elif part == "all" or part in FAMILIES:
            families.append(part)
        else:
            raise SystemExit(f"unknown variant part {part!r}")
    if families:
        opts += ["--modality", ",".join(families), "--modality-prob", str(prob)]
    return opts


def _run_dir(runs: Path, source: str, variant: str) -> Path:
    return runs / f"{source}-{variant}"


def train_and_score(source: str, variant: str, args: argparse.Namespace) -> Dict[str, object]:
    """Train one variant from the source's single-dataset model and score its last.pt on both test splits."""
    run = _run_dir(Path(args.runs), source, variant)
    options = variant_options(variant, args.prob, source, Path(args.runs))
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "rrl_edge.cli", "train", "--data", str(DATA / source), "--init-from", str(INIT[source]),
           "--max-steps", str(args.steps), "--lr", str(args.lr), "--warmup-steps", "50", "--threads", "1",
           "--eval-every", str(args.steps), "--seed", "0", "--out-dir", str(run), "--overwrite", "--quiet",
           *options]
    log = run.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    minutes = (time.monotonic() - t0) / 60
    scores = subprocess.run([sys.executable, str(Path(__file__)), "--score", str(run / "last.pt"),
                             "--polarity", args.polarity], check=True, cwd=ROOT, capture_output=True, text=True).stdout
    row = json.loads(scores.strip().splitlines()[-1])
    curve = json.loads((run / "curve.json").read_text())
    row.update(source=source, variant=variant, steps=args.steps, train_minutes=round(minutes, 1),
               val_fpr95=curve["history"][-1]["val_fpr95"], options=" ".join(options))
    return row


def score(checkpoint: str, polarities: str = POLARITY_AS_IS) -> Dict[str, float]:
    """Mean test FPR95 of a checkpoint on each dataset (ONNX Runtime FP32, one thread), for each test-time
    ``--polarity`` in the comma-separated ``polarities``: key DATASET as given, DATASET@POLARITY otherwise."""
    from rrl_edge.checkpoint import load_model
    from rrl_edge.data.build import PatchConfig, ensure_dataset, load_split
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.fpr95_table import FPR95Table
    from rrl_edge.runtime.registry import score_with

    out: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for polarity in polarities.split(","):
            onnx = Path(tmp) / f"m-{polarity}.onnx"
            export_onnx(load_model(checkpoint, polarity)[0], onnx)
            for name in DATASETS:
                sets = load_split(ensure_dataset(DATA / name, PatchConfig(), progress=False), "test")
                scores = {c: score_with(onnx, ps.patches, threads=1) for c, ps in sets.items()}
                key = name if polarity == POLARITY_AS_IS else f"{name}@{polarity}"
                out[key] = round(FPR95Table.from_scores({c: ps.labels for c, ps in sets.items()}, scores).mean_fpr95, 4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(("none", *FAMILIES, "all")))
    p.add_argument("--directions", default=",".join(DATASETS), help="source datasets (trained on; tested on the other)")
    p.add_argument("--cells", help="SOURCE:VARIANT,... in this order (instead of --directions x --variants)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--prob", type=float, default=0.25, help="--modality-prob of the modality variants")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "lodo"))
    p.add_argument("--json", type=Path)
    p.add_argument("--polarity", default=POLARITY_AS_IS,
                   help="test-time --polarity of the scoring, comma-separated for several (as-is,both): "
                        "both adds DATASET@both columns (twice the scoring time)")
    p.add_argument("--score", help="score this checkpoint only (both test splits) and print its JSON")
    args = p.parse_args(argv)
    if args.score:
        print(json.dumps(score(args.score, args.polarity)))
        return 0

    results: Dict[str, Dict[str, object]] = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    cells = (args.cells.split(",") if args.cells else
             [f"{s}:{v}" for s in args.directions.split(",") for v in args.variants.split(",")])
    todo: List[Tuple[str, str]] = [(c.split(":")[0], c.split(":")[1]) for c in cells if c not in results]
    for s, v in todo:
        variant_options(v, args.prob, s, Path(args.runs))  # unknown names fail (and synthetic folders are made) first

    def one(job: Tuple[str, str]) -> None:
        row = train_and_score(*job, args)
        results[f"{job[0]}:{job[1]}"] = row
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))
    print(f"\n{'trained on':<10} {'variant':<22} {'steps':>5} {'in-domain':>9} {'other dataset':>13} {'min':>5}")
    for key, r in sorted(results.items()):
        src = str(r["source"])
        other = [d for d in DATASETS if d != src][0]
        extra = "".join(f"  {k}: {float(v):.2f}" for k, v in r.items() if "@" in k)  # type: ignore[arg-type]
        print(f"{src:<10} {r['variant']:<22} {r['steps']:>5} {r[src]:>9.2f} {r[other]:>13.2f} {r['train_minutes']:>5}"
              + extra)
    print("\n" + markdown(results))
    return 0


def markdown(results: Dict[str, Dict[str, object]]) -> str:
    """One row per (source, variant) with its batch orders pooled: every run's FPR95 and their mean."""
    groups: Dict[Tuple[str, str], List[Dict[str, object]]] = {}
    for r in results.values():
        base = "+".join(p for p in str(r["variant"]).split("+") if not p.startswith("order")) or "none"
        groups.setdefault((str(r["source"]), base), []).append(r)
    lines = ["| trained on | variant | runs | in-domain FPR95 | other dataset FPR95 | other, mean |",
             "|---|---|---:|---:|---:|---:|"]
    for (src, base), rows in sorted(groups.items()):
        other = [d for d in DATASETS if d != src][0]
        ins = " / ".join(f"{float(r[src]):.2f}" for r in rows)  # type: ignore[arg-type]
        outs = " / ".join(f"{float(r[other]):.2f}" for r in rows)  # type: ignore[arg-type]
        mean = sum(float(r[other]) for r in rows) / len(rows)  # type: ignore[arg-type]
        lines.append(f"| {src} | {base} | {len(rows)} | {ins} | {outs} | {mean:.2f} |")
        for polarity in sorted({k.split("@")[1] for r in rows for k in r if k.startswith(other + "@")}):
            scored = [r for r in rows if f"{other}@{polarity}" in r]
            ins = " / ".join(f"{float(r[f'{src}@{polarity}']):.2f}" for r in scored)  # type: ignore[arg-type]
            outs = " / ".join(f"{float(r[f'{other}@{polarity}']):.2f}" for r in scored)  # type: ignore[arg-type]
            mean = sum(float(r[f"{other}@{polarity}"]) for r in scored) / len(scored)  # type: ignore[arg-type]
            lines.append(f"| {src} | {base}, `--polarity {polarity}` | {len(scored)} | {ins} | {outs} | {mean:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
