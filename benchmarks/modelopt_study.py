"""ModelOpt's ONNX PTQ against the ONNX Runtime route of calibration/quantize.py, on the same calibration pairs.

    # 0. a venv for ModelOpt that reuses the project's torch, onnx and onnxruntime (measured: ModelOpt 0.47.0 runs
    #    with onnx 1.23.2 and onnxruntime 1.32 although it pins 1.21 / onnxruntime-gpu 1.24), and that hides
    #    tensorrt-stubs (ModelOpt would take the types-only `tensorrt` for TensorRT and fail on trt.Logger):
    python3 -m venv /tmp/movenv && S=/tmp/movenv/lib/python3.11/site-packages
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" > $S/rrl_venv.pth
    mkdir -p $S/tensorrt && echo 'raise ImportError("types only")' > $S/tensorrt/__init__.py
    /tmp/movenv/bin/pip install --no-deps nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxconverter-common==1.16.0 \
        onnx-ir ml_dtypes onnxscript polygraphy cppimport lief ninja nvidia-ml-py pydantic pydantic-core \
        annotated-types typing-inspection omegaconf antlr4-python3-runtime "pulp<4" regex rich markdown-it-py \
        mdurl pygments safetensors scipy PyYAML
    # 1. quantize (DEPLOY from `rrl-edge export --int8 --out-dir DEPLOY`):
    /tmp/movenv/bin/python benchmarks/modelopt_study.py quantize --deploy DEPLOY --out rrl.int8.modelopt.onnx \
        [--method entropy] [--placement modelopt]
    # 2. in the project's venv: TensorRT rules + fusion check, then FPR95 parity on every VIS-NIR test pair of the
    #    export proof's cut (rrl-edge data build --keypoint-sampling strongest --out-dir CUT):
    python benchmarks/modelopt_study.py check rrl.int8.modelopt.onnx
    rrl-edge parity --reference rrl_edge/weights/rrlnet_visnir.pt --data CUT --candidate DEPLOY/rrl.int8.onnx \
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


def quantize(deploy: Path, out: Path, method: str, placement: str = "conv-gemm") -> None:
    import onnx
    from modelopt.onnx.quantization import quantize as mo_quantize

    from rrl_edge.calibration.quantize import float_nodes, rewire_float_inputs, score_head_nodes
    from rrl_edge.contracts import CALIB_SAMPLES, FP32_ONNX, INPUT_NAMES, to_unit_float

    pairs = to_unit_float(np.load(deploy / CALIB_SAMPLES))
    data = {INPUT_NAMES[0]: np.ascontiguousarray(pairs[:, :1]), INPUT_NAMES[1]: np.ascontiguousarray(pairs[:, 1:])}
    proto = onnx.load(str(deploy / FP32_ONNX))
    keep = float_nodes(proto) + score_head_nodes(proto)
    mo_quantize(str(deploy / FP32_ONNX), quantize_mode="int8", calibration_data=data, calibration_method=method,
                calibration_eps=["cpu"], nodes_to_exclude=keep, output_path=str(out), high_precision_dtype="fp32",
                dq_only=False, op_types_to_quantize=["Conv", "Gemm"] if placement == "conv-gemm" else None,
                opset=17)  # TensorRT 8.5 parses opsets up to 17 (ModelOpt would raise it to 19)
    quantized = onnx.load(str(out))  # as the ORT route does: a layer kept float reads the float tensor
    rewired = rewire_float_inputs(quantized, keep)
    if rewired:
        onnx.save(quantized, str(out))
    print(f"wrote {out} ({placement} placement, {rewired} float-layer inputs rewired to float)")


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
    q.add_argument("--placement", default="conv-gemm", choices=("conv-gemm", "modelopt"),
                   help="quantize Conv/Gemm only, as the ORT route does, or every op type ModelOpt's TensorRT rules pick")
    c = sub.add_parser("check")
    c.add_argument("model", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "quantize":
        quantize(args.deploy, args.out, args.method, args.placement)
        return 0
    return check(args.model)


if __name__ == "__main__":
    sys.exit(main())
