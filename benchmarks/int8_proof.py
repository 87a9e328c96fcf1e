"""The numbers behind the INT8 proof's pass rule: what INT8 and what noise do to each proof measure.

    python benchmarks/int8_proof.py [--models joint joint-w050] [--data vis-nir roadscene] [--variants ...]
                                    [--checkpoint NAME=PATH ...]

For each shipped model and data set (the default cut, every test pair, the pairs `rrl-edge eval` scores) it
scores, through ONNX Runtime, the FP32 ONNX (the reference: it matches PyTorch to 1e-5) and these candidates:

- ``fp16-weights``: the FP32 graph with its weights rounded to FP16, a change nobody calls a regression
  (what the measures read for a harmless perturbation);
- ``ptq``: the export's INT8 (TensorRT Q/DQ flavour, 512 calibration pairs, 99.999th percentile);
- ``ptq-seed1``: the same with another calibration draw (calibration noise);
- ``broken-8pairs``: calibrated on 8 pairs with min-max ranges;
- ``broken-all-int8``: every Conv and Gemm quantized, the float layers of the export included.

and prints per category: ΔFPR95, its paired bootstrap interval, the logit RMS difference, ΔTPR at the
reference's FPR95 threshold and the decision agreement at 0.5, then the verdict of the export's rule
(rrl_edge.runtime.parity.proof_verdict). Numbers, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from rrl_edge.calibration.quantize import TENSORRT, quantize
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.runtime.onnxruntime_runner import cpu_session
from rrl_edge.runtime.parity import compare
from rrl_edge.runtime.registry import score_with

WORK = Path(tempfile.gettempdir()) / "rrl-int8-proof"
VARIANTS = ("fp16-weights", "ptq", "ptq-seed1", "broken-8pairs", "broken-all-int8")


def export_fp32(checkpoint: Path, sample: np.ndarray) -> Path:
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx
    from rrl_edge.checkpoint import load_model

    out = WORK / f"{checkpoint.stem}.onnx"
    if not out.is_file():
        model, _ = load_model(checkpoint)
        proto = export_onnx(model, WORK / "raw.onnx")
        simplify_onnx(proto, out, sample)
    return out


def fp16_weights(fp32: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    out = fp32.with_name(fp32.stem + "-fp16w.onnx")
    proto = onnx.load(str(fp32))
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16).astype(np.float32), init.name))
    onnx.save(proto, str(out))
    return out


def calibration(count: int, seed: int) -> np.ndarray:
    from rrl_edge.calibration.sampling import load_calibration_sets, select_samples
    from rrl_edge.data.build import default_dataset

    sets, _ = load_calibration_sets(default_dataset())
    if count < 16:  # fewer pairs than (category, label) groups: the first pairs of the draw of 16
        return select_samples(sets, 16, seed).pairs[:count]
    return select_samples(sets, count, seed).pairs


def variant(fp32: Path, name: str) -> Path:
    if name == "fp16-weights":
        return fp16_weights(fp32)
    out = fp32.with_name(f"{fp32.stem}-{name}.onnx")
    if out.is_file():
        return out
    if name == "ptq":
        quantize(fp32, out, calibration(512, 0), TENSORRT, "percentile")
    elif name == "ptq-seed1":
        quantize(fp32, out, calibration(512, 1), TENSORRT, "percentile")
    elif name == "broken-8pairs":
        quantize(fp32, out, calibration(8, 0), TENSORRT, "minmax")
    elif name == "broken-all-int8":
        quantize(fp32, out, calibration(512, 0), TENSORRT, "percentile", floats=[])
    else:
        raise SystemExit(f"unknown variant {name}")
    return out


def scores(model: Path, sets: Mapping[str, PatchSet]) -> Dict[str, np.ndarray]:
    session = cpu_session(model)
    return {c: score_with(session, ps.patches, 256) for c, ps in sets.items()}


def report(title: str, sets: Mapping[str, PatchSet], ref: Mapping[str, np.ndarray], name: str,
           cand: Mapping[str, np.ndarray]) -> None:
    from rrl_edge.runtime.parity import proof_verdict

    labels = {c: ps.labels for c, ps in sets.items()}
    result = compare(labels, ref, cand, 0.3)
    print(f"\n{title} | {name}: {proof_verdict(result)}")
    print(f"{'category':<12} {'FP32':>6} {'delta':>6} {'95% interval':>16} {'logitRMS':>8} {'dTPR':>6} {'agree%':>7}")
    for cat, c in result["categories"].items():
        lo, hi = c["delta_ci"]
        print(f"{cat:<12} {c['fpr95_reference']:>6.2f} {c['delta']:>+6.2f} {f'[{lo:+.2f}, {hi:+.2f}]':>16} "
              f"{c['logit_rms']:>8.3f} {c['tpr_delta']:>+6.2f} {100 * c['agreement']:>7.2f}")
    lo, hi = result["mean_delta_ci"]
    print(f"{'mean':<12} {result['mean_fpr95_reference']:>6.2f} {result['mean_delta']:>+6.2f} "
          f"{f'[{lo:+.2f}, {hi:+.2f}]':>16} {result['logit_rms']:>8.3f} {result['worst_abs_tpr_delta']:>6.2f} "
          f"{100 * result['agreement']:>7.2f}", flush=True)


def main(argv: Optional[List[str]] = None) -> None:
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.data.build import PatchConfig, default_data_root
    from rrl_edge.patch_sources import load_sets

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["joint", "joint-w050"])
    parser.add_argument("--checkpoint", nargs="*", default=[], metavar="NAME=PATH", help="more models by file")
    parser.add_argument("--data", nargs="+", default=["vis-nir", "roadscene"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    models = {m: shipped_checkpoint(m) for m in args.models}
    models.update({k: Path(v) for k, v in (item.split("=", 1) for item in args.checkpoint)})
    data = {d: load_sets(default_data_root() / d, "test", PatchConfig(), progress=False)[0] for d in args.data}
    sample = next(iter(data[args.data[0]].values())).patches[:256]
    for model_name, checkpoint in models.items():
        fp32 = export_fp32(checkpoint, sample)
        refs = {d: scores(fp32, sets) for d, sets in data.items()}
        for name in args.variants:
            path = variant(fp32, name)
            for d, sets in data.items():
                report(f"{model_name} on {d}", sets, refs[d], name, scores(path, sets))


if __name__ == "__main__":
    main()
