"""ModelOpt's ONNX PTQ against the ONNX Runtime route of calibration/quantize.py, on the same calibration pairs.

    # 1. in a venv with nvidia-modelopt[onnx] (it needs Python >= 3.10, torch, onnx 1.21, onnxruntime-gpu 1.24):
    python benchmarks/modelopt_study.py quantize --deploy DEPLOY --out rrl.int8.modelopt.onnx
    # 2. in the project's venv: TensorRT rules + fusion check, then FPR95 parity on every VIS-NIR test pair
    python benchmarks/modelopt_study.py check rrl.int8.modelopt.onnx
    rrl-edge parity --reference rrl_edge/weights/rrlnet_visnir.pt --candidate DEPLOY/rrl.int8.onnx \
        --candidate rrl.int8.modelopt.onnx --budget 0.3 --json modelopt-parity.json

Both quantize DEPLOY/rrl.onnx with DEPLOY/rrl.calib.npy (the export's 512 training pairs) and keep the same
layers float (calibration.quantize.float_nodes + the score head); ModelOpt keeps float layers in FP32
(high_precision_dtype fp32, as the ORT route does) and FP32 weights behind Q/DQ (dq_only False: TensorRT 8.x).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def quantize(deploy: Path, out: Path, method: str) -> None:
    import onnx
    from modelopt.onnx.quantization import quantize as mo_quantize

    from rrl_edge.calibration.quantize import float_nodes, score_head_nodes
    from rrl_edge.contracts import CALIB_SAMPLES, FP32_ONNX, INPUT_NAMES, to_unit_float

    pairs = to_unit_float(np.load(deploy / CALIB_SAMPLES))
    data = {INPUT_NAMES[0]: np.ascontiguousarray(pairs[:, :1]), INPUT_NAMES[1]: np.ascontiguousarray(pairs[:, 1:])}
    proto = onnx.load(str(deploy / FP32_ONNX))
    keep = float_nodes(proto) + score_head_nodes(proto)
    mo_quantize(str(deploy / FP32_ONNX), quantize_mode="int8", calibration_data=data, calibration_method=method,
                calibration_eps=["cpu"], nodes_to_exclude=keep, output_path=str(out), high_precision_dtype="fp32",
                dq_only=False, op_types_to_quantize=["Conv", "Gemm"])
    print(f"wrote {out}")


def check(path: Path) -> int:
    import onnx

    from rrl_edge.export.graph_check import check_fusion, check_graph

    proto = onnx.load(str(path))
    ops = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    print(f"{path}: {ops.get('QuantizeLinear', 0)} Q, {ops.get('DequantizeLinear', 0)} DQ, opset "
          f"{[o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')]}")
    problems = check_graph(proto)
    print("TensorRT rules + fusion check:", "clean" if not problems else f"{len(problems)} problems")
    for p in problems[:30]:
        print("  -", p)
    print("fusion-only problems:", len(check_fusion(proto)))
    return 0 if not problems else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("--deploy", required=True, type=Path)
    q.add_argument("--out", required=True, type=Path)
    q.add_argument("--method", default="max", choices=("max", "entropy"))
    c = sub.add_parser("check")
    c.add_argument("model", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "quantize":
        quantize(args.deploy, args.out, args.method)
        return 0
    return check(args.model)


if __name__ == "__main__":
    sys.exit(main())
