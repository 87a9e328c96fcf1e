"""INT8 study of an RRL-Net export: which layers are sensitive, how stable calibration is, how fast CPU INT8 runs.

    python benchmarks/int8_study.py sensitivity [--fp32 rrl.onnx] [--seed 2] [--method entropy]
    python benchmarks/int8_study.py sweep [--seeds 0 1 2 3 4] [--samples 512 1024] [--methods entropy minmax]
                                          [--flavour tensorrt|cpu] [--no-reduce-range] [--old-floats]
    python benchmarks/int8_study.py speed [--batch 64] [--threads 2] [--rounds 5]
    python benchmarks/int8_study.py noise [--sigmas 0.05 0.19] [--trials 60]

Accuracy runs score the proof sets the export uses (2000 real VIS-NIR test pairs per category, seed 0)
with ONNX Runtime on one thread (the FP32 ONNX scores are the reference: they match PyTorch to 1e-5, so
their FPR95 is PyTorch's) and print each variant's FPR95 delta per category, the mean's delta, the worst
|delta|, the decision agreement and the RMS error of the logit. Without ``--fp32`` the shipped model is
exported first. Speed runs time each CPU variant against FP32 in the same process, interleaved, on real
pairs: the ratio is the number to read (the CPU is shared, absolute pairs/s are noisy). Numbers, not
tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rrl_edge.calibration.quantize import CPU, TENSORRT, Flavour, gate_nodes, quantize, quantizable_nodes
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.runtime.onnxruntime_runner import cpu_session
from rrl_edge.runtime.registry import score_with

WORK = Path(tempfile.gettempdir()) / "rrl-int8-study"


def export_fp32(checkpoint: Optional[Path]) -> Path:
    """The simplified FP32 ONNX of ``checkpoint`` (default: the shipped model), cached under WORK."""
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx

    model, meta = load_model(checkpoint)
    out = WORK / (Path(meta["path"]).stem + ".onnx")
    if not out.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        proto = export_onnx(model, WORK / "raw.onnx")
        simplify_onnx(proto, out, next(iter(proof().values())).patches[:256])
    return out


def proof(per_category: int = 2000) -> Dict[str, PatchSet]:
    from rrl_edge.data.build import PatchConfig, default_data_root
    from rrl_edge.export.parity import proof_sets
    from rrl_edge.patch_sources import load_sets

    sets, _ = load_sets(default_data_root() / "vis-nir", "test", PatchConfig(), progress=False)
    return proof_sets(sets, per_category, 0)


def calibration_pairs(count: int, seed: int) -> np.ndarray:
    from rrl_edge.calibration.sampling import load_calibration_sets, select_samples
    from rrl_edge.data.build import default_data_root

    sets, _ = load_calibration_sets(default_data_root() / "vis-nir")
    return select_samples(sets, count, seed).pairs


def scores(model: Path, sets: Mapping[str, PatchSet], threads: int = 1) -> Dict[str, np.ndarray]:
    session = cpu_session(model, threads)
    return {c: score_with(session, ps.patches, 256) for c, ps in sets.items()}


def logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s))


def compare(sets: Mapping[str, PatchSet], ref: Mapping[str, np.ndarray], q: Mapping[str, np.ndarray]) -> Dict[str, object]:
    from rrl_edge.export.parity import int8_parity

    return int8_parity({c: ps.labels for c, ps in sets.items()}, ref, q, 0.3)


def row(name: str, parity: Mapping[str, object], categories: Sequence[str]) -> str:
    cats = parity["categories"]
    deltas = " ".join(f"{cats[c]['delta']:>+6.2f}" for c in categories)  # type: ignore[index]
    return (f"{name:<34} {deltas} {parity['mean_delta']:>+6.3f} {parity['worst_abs_delta']:>6.2f} "  # type: ignore[index]
            f"{100 * parity['agreement']:>7.2f} {parity['logit_rms']:>7.3f}")  # type: ignore[operator]


def header(first: str, categories: Sequence[str]) -> str:
    return f"{first:<34} " + " ".join(f"{c[:6]:>6}" for c in categories) + f" {'mean':>6} {'worst':>6} {'agree%':>7} {'logitRMS':>7}"


def make_int8(fp32: Path, flavour: Flavour, method: str, samples: int, seed: int, exclude: Sequence[str] = (),
              include: Optional[Sequence[str]] = None, tag: str = "", floats: Optional[Sequence[str]] = None) -> Path:
    """Quantize with ranges cached per (flavour sign, method, samples, seed): only the first call calibrates.

    ``floats`` None: the export's float layers; else only these (and the score head) stay float.
    """
    import onnx

    sign = ("u8" if flavour.unsigned_activations else "s8") + ("" if flavour.op_types == TENSORRT.op_types else "-act")
    ranges = WORK / f"ranges-{fp32.stem}-{sign}-{method}-{samples}-{seed}.json"
    out = WORK / f"{fp32.stem}-{flavour.name}-{method}-{samples}-{seed}{tag}.onnx"
    if include is not None:
        everything = quantizable_nodes(onnx.load(str(fp32)), flavour, floats)
        exclude = list(exclude) + [n for n in everything if n not in set(include)]
    pairs = calibration_pairs(samples, seed) if not ranges.is_file() else np.zeros((0, 2, 64, 64), np.uint8)
    quantize(fp32, out, pairs, flavour, method, ranges, exclude=exclude, reuse_ranges=True, floats=floats)
    return out


def conv_macs(fp32: Path) -> Dict[str, int]:
    """Multiply-adds per pair of every Conv and Gemm node, from ONNX shape inference."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info}
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    out: Dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in weights:
            w = weights[node.input[1]]
            per_output = int(np.prod(w[1:])) if node.op_type == "Conv" else w[1]
            spatial = int(np.prod(dims.get(node.output[0], [1, 1])[2:])) if node.op_type == "Conv" else 1
            out[node.name] = w[0] * spatial * per_output
    return out


def int8_fraction(fp32: Path, int8: Path) -> float:
    """Share of the conv and Gemm multiply-adds whose weights come through a DequantizeLinear (run int8)."""
    import onnx

    proto = onnx.load(str(int8))
    producers = {o: n for n in proto.graph.node for o in n.output}
    quantized = {n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")
                 and producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear"}
    macs = conv_macs(fp32)
    return sum(v for k, v in macs.items() if k in quantized) / sum(macs.values())


def _slug(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


def groups(fp32: Path) -> List[Tuple[str, List[str]]]:
    """The layers int8 could run (everything but ``gate_nodes`` and the score head), grouped by block:
    ALFE stage k (both branches), FIL stage k, the head's hidden Gemms."""
    import onnx

    proto = onnx.load(str(fp32))
    names = quantizable_nodes(proto, TENSORRT, gate_nodes(proto))
    out: List[Tuple[str, List[str]]] = []
    for k in range(1, 5):
        out.append((f"ALFE stage {k + 1} conv (x2)", [n for n in names if f"/convs.{k}/" in n and n.startswith("/alfe")]))
    for k in range(5):
        out.append((f"FIL stage {k + 1} convs (2)", [n for n in names if n.startswith(f"/fil/stages.{k}/convs")]))
    out.append(("head Gemm 1-2", [n for n in names if n.startswith("/head")]))
    return [(label, members) for label, members in out if members]


def cmd_sensitivity(args: argparse.Namespace) -> None:
    fp32 = args.fp32 or export_fp32(args.checkpoint)
    sets = proof(args.proof_pairs)
    cats = list(sets)
    ref = scores(fp32, sets)
    print(f"Sensitivity: one group quantized at a time ({TENSORRT.name}, {args.method}, {args.samples} pairs, "
          f"seed {args.seed}); {sum(len(s) for s in sets.values())} test pairs")
    print(header("quantized group", cats) + f" {'MACs%':>6}")
    import onnx

    gates = gate_nodes(onnx.load(str(fp32)))
    rows: List[Tuple[str, Optional[List[str]], Optional[List[str]]]] = [(g, m, gates) for g, m in groups(fp32)]
    rows += [("all of them (the old default)", None, gates), ("the export's default", None, None)]
    for label, include, floats in rows:
        path = make_int8(fp32, TENSORRT, args.method, args.samples, args.seed, include=include,
                         tag="-" + _slug(label), floats=floats)
        share = 100 * int8_fraction(fp32, path)
        print(row(label, compare(sets, ref, scores(path, sets)), cats) + f" {share:>6.1f}", flush=True)


def cmd_sweep(args: argparse.Namespace) -> None:
    import onnx

    fp32 = args.fp32 or export_fp32(args.checkpoint)
    sets = proof(args.proof_pairs)
    cats = list(sets)
    ref = scores(fp32, sets)
    flavour = {"tensorrt": TENSORRT, "cpu": CPU}[args.flavour]
    if args.no_reduce_range:
        flavour = replace(flavour, name=flavour.name + "-8bit", reduce_range=False)
    exclude: List[str] = []
    floats = None
    if args.old_floats:
        floats = gate_nodes(onnx.load(str(fp32)))
    if args.float_groups:
        for label, members in groups(fp32):
            if any(g.lower() in label.lower() for g in args.float_groups):
                exclude += members
    print(f"Sweep: {flavour.name}, float: {'gate_nodes (old default)' if floats else 'float_nodes (default)'}"
          f"{' + groups ' + str(args.float_groups) if args.float_groups else ''}; "
          f"{sum(len(s) for s in sets.values())} test pairs")
    print(header("method samples seed", cats))
    worst: Dict[str, float] = {}
    for method in args.methods:
        for samples in args.samples:
            for seed in args.seeds:
                path = make_int8(fp32, flavour, method, samples, seed, exclude=exclude, floats=floats,
                                 tag=f"-{_slug(' '.join(exclude) + str(floats))}-{flavour.name}")
                parity = compare(sets, ref, scores(path, sets))
                if method == args.methods[0] and samples == args.samples[0] and seed == args.seeds[0]:
                    print(f"int8 share of conv/Gemm multiply-adds: {100 * int8_fraction(fp32, path):.1f}%")
                key = f"{method} {samples}"
                worst[key] = max(worst.get(key, 0.0), float(parity["worst_abs_delta"]))  # type: ignore[arg-type]
                print(row(f"{method} {samples} {seed}", parity, cats), flush=True)
    for key, value in worst.items():
        print(f"{key}: worst |delta| over seeds {value:.2f}")


def cmd_noise(args: argparse.Namespace) -> None:
    """How far FPR95 moves under random logit noise of a given RMS: the floor any INT8 model meets."""
    from rrl_edge.metrics import fpr95

    fp32 = args.fp32 or export_fp32(args.checkpoint)
    sets = proof(args.proof_pairs)
    ref = scores(fp32, sets)
    base = {c: fpr95(sets[c].labels, ref[c]) for c in sets}
    rng = np.random.default_rng(args.seed)
    print(f"FPR95 under Gaussian logit noise, {args.trials} trials per RMS, {sum(len(s) for s in sets.values())} test pairs")
    print(f"{'logit RMS':>9} {'worst|d| median':>15} {'p90':>5} {'P(<=0.3)':>8} {'P(<=0.6)':>8} {'P(<=1.0)':>8} "
          f"{'|mean d| p90':>12} {'P(<=0.1)':>8}")
    for sigma in args.sigmas:
        worst, mean = [], []
        for _ in range(args.trials):
            d = [fpr95(sets[c].labels, 1 / (1 + np.exp(-(logit(r) + rng.normal(0, sigma, len(r)))))) - base[c]
                 for c, r in ref.items()]
            worst.append(max(abs(x) for x in d))
            mean.append(abs(float(np.mean(d))))
        w, m = np.array(worst), np.array(mean)
        print(f"{sigma:>9.2f} {np.median(w):>15.2f} {np.percentile(w, 90):>5.2f} {np.mean(w <= 0.3 + 1e-9):>8.2f} "
              f"{np.mean(w <= 0.6 + 1e-9):>8.2f} {np.mean(w <= 1.0 + 1e-9):>8.2f} {np.percentile(m, 90):>12.3f} "
              f"{np.mean(m <= 0.1 + 1e-9):>8.2f}")


def _timed(session, pairs: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    score_with(session, pairs, batch)
    return time.perf_counter() - start


def cmd_speed(args: argparse.Namespace) -> None:
    fp32 = args.fp32 or export_fp32(args.checkpoint)
    sets = proof(max(2, args.pairs // 8))
    pairs = np.concatenate([ps.patches for ps in sets.values()])[: args.pairs]
    variants: List[Tuple[str, Path]] = [("FP32", fp32)]
    for name, flavour in speed_variants():
        if args.only and not any(o in flavour.name for o in args.only):
            continue
        variants.append((name, make_int8(fp32, flavour, args.method, args.samples, 0, tag=f"-speed-{flavour.name}")))
    sessions = [(name, cpu_session(path, args.threads)) for name, path in variants]
    for _, session in sessions:
        score_with(session, pairs[: args.batch * 2], args.batch)  # warm-up
    times: Dict[str, List[float]] = {name: [] for name, _ in sessions}
    for _ in range(args.rounds):  # interleaved, so that load from other processes hits every variant alike
        for name, session in sessions:
            times[name].append(_timed(session, pairs, args.batch))
    base = statistics.median(times["FP32"])
    print(f"ONNX Runtime CPU, {len(pairs)} real pairs, batch {args.batch}, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds (shared CPU: read the ratio)")
    print(f"{'variant':<44} {'pairs/s':>9} {'vs FP32':>8}")
    for name, _ in sessions:
        t = statistics.median(times[name])
        print(f"{name:<44} {len(pairs) / t:>9.0f} {base / t:>7.2f}x")


SPEED_OPS = ("Conv", "Gemm", "LeakyRelu", "MaxPool", "Relu")  # int8 through the activation: ORT fuses QLinearConv


def speed_variants() -> List[Tuple[str, Flavour]]:
    """CPU INT8 layouts worth timing: which ops are quantized, QDQ vs QOperator, u8/s8, reduce_range, per-channel.

    With only Conv and Gemm quantized no convolution output is quantized, so ONNX Runtime cannot fuse a
    QLinearConv: it dequantizes and runs the float kernel. Quantizing the activation after the convolution
    as well gives it DQ -> Conv -> Q units it runs in int8.
    """
    u8 = replace(CPU, reduce_range=False)
    return [
        ("TensorRT Q/DQ: s8, Conv+Gemm", TENSORRT),
        ("CPU QDQ u8 reduce_range, Conv+Gemm (old)", CPU),
        ("CPU QDQ u8, Conv+Gemm", replace(u8, name="cpu-u8")),
        ("CPU QOperator u8, Conv+Gemm", replace(u8, name="cpu-qop", quant_format="qoperator")),
        ("CPU QDQ u8, +LeakyRelu+MaxPool", replace(u8, name="cpu-u8-act", op_types=SPEED_OPS)),
        ("CPU QOperator u8, +LeakyRelu+MaxPool", replace(u8, name="cpu-qop-act", op_types=SPEED_OPS, quant_format="qoperator")),
        ("CPU QDQ u8 per-tensor, +LeakyRelu+MaxPool", replace(u8, name="cpu-u8-act-pt", op_types=SPEED_OPS, per_channel=False)),
        ("CPU QDQ s8 symmetric, +LeakyRelu+MaxPool", replace(TENSORRT, name="cpu-s8-act", op_types=SPEED_OPS)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("sensitivity", "sweep", "speed", "noise"):
        p = sub.add_parser(name)
        p.add_argument("--fp32", type=Path, help="an exported rrl.onnx (default: export the shipped model)")
        p.add_argument("--checkpoint", type=Path)
        p.add_argument("--proof-pairs", type=int, default=2000, help="test pairs per category (default 2000)")
        p.add_argument("--method", default="percentile", help="calibration method (default: the export's)")
        p.add_argument("--samples", type=int, nargs="+" if name == "sweep" else None, default=[512] if name == "sweep" else 512)
        p.add_argument("--seed", type=int, default=2)
    sweep = sub.choices["sweep"]
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    sweep.add_argument("--methods", nargs="+", default=["percentile"])
    sweep.add_argument("--flavour", choices=("tensorrt", "cpu"), default="tensorrt")
    sweep.add_argument("--no-reduce-range", action="store_true")
    sweep.add_argument("--old-floats", action="store_true", help="keep only gate_nodes float (the old default)")
    sweep.add_argument("--float-groups", nargs="*", default=[], help="labels (substrings) of groups kept float")
    speed = sub.choices["speed"]
    speed.add_argument("--pairs", type=int, default=2048)
    speed.add_argument("--batch", type=int, default=64)
    speed.add_argument("--threads", type=int, default=2)
    speed.add_argument("--rounds", type=int, default=5)
    speed.add_argument("--only", nargs="*", help="flavour names (substrings) to time, besides FP32")
    noise = sub.choices["noise"]
    noise.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.03, 0.05, 0.1, 0.19, 0.28])
    noise.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    {"sensitivity": cmd_sensitivity, "sweep": cmd_sweep, "speed": cmd_speed, "noise": cmd_noise}[args.command](args)


if __name__ == "__main__":
    main()
