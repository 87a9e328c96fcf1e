#!/usr/bin/env bash
# GPU parity: export the shipped model, build FP32 / FP16 / INT8 TensorRT engines on this machine's GPU,
# and compare every artifact's FPR95 with the PyTorch checkpoint on the VIS-NIR test split.
#
#   scripts/gpu_parity.sh [DATA_DIR] [OUT_DIR]
#     DATA_DIR  VIS-NIR image-pair folder (default: $RRL_EDGE_DATA/vis-nir, else ../shared/data/vis-nir)
#     OUT_DIR   where the ONNX files, engines and reports go (default: gpu-parity)
#   CHECKPOINT=path.pt  compare another checkpoint (default: the shipped VIS-NIR model)
#   PYTHON=...          the Python that has rrl-edge, tensorrt and pycuda (default: .venv/bin/python or python3)
#
# Writes OUT_DIR/parity.json and OUT_DIR/parity.png; exits non-zero when a candidate is outside the
# 0.3-point FPR95 budget. Needs TensorRT, pycuda and an NVIDIA GPU (a Jetson or a desktop card); the
# export step also needs the workstation extras (pip install -e '.[train,export]').
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
rrl_edge() { "$PYTHON" -c 'import sys; from rrl_edge.cli import main; sys.exit(main())' "$@"; }

if ! "$PYTHON" - <<'PY'
import sys
from rrl_edge.export.tensorrt_build import tensorrt_status
ok, reason = tensorrt_status()
if ok:
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        ok, reason = False, "pycuda is not installed"
print(("GPU parity: " if ok else "GPU parity needs TensorRT, pycuda and a CUDA GPU: ") + reason,
      file=sys.stdout if ok else sys.stderr)
sys.exit(0 if ok else 1)
PY
then
    echo "Install TensorRT and pycuda (JetPack ships them; on a desktop: pip install tensorrt pycuda) and run" \
         "this on the machine whose GPU will run the engines. Without a GPU, compare the ONNX files with" \
         "\`rrl-edge parity --candidate OUT/rrl.onnx --candidate OUT/rrl.int8-cpu.onnx ...\` instead." >&2
    exit 1
fi

DATA=${1:-}
if [ -z "$DATA" ]; then
    DATA=$("$PYTHON" -c 'from rrl_edge.data.build import default_data_root; print(default_data_root() / "vis-nir")')
fi
OUT=${2:-gpu-parity}
CHECKPOINT=${CHECKPOINT:-$("$PYTHON" -c 'from rrl_edge.checkpoint import SHIPPED; print(SHIPPED["vis-nir"])')}
if [ ! -d "$DATA" ]; then
    echo "GPU parity: data folder $DATA not found (pass the VIS-NIR image-pair folder as the first argument)" >&2
    exit 1
fi
if [ ! -f "$CHECKPOINT" ]; then
    echo "GPU parity: checkpoint $CHECKPOINT not found" >&2
    exit 1
fi
mkdir -p "$OUT"

echo "== export (FP32 and INT8 ONNX) to $OUT"
rrl_edge export --checkpoint "$CHECKPOINT" --int8 --out-dir "$OUT" --quiet
echo "== TensorRT engines"
rrl_edge build --onnx "$OUT/rrl.onnx" --engine "$OUT/fp32.plan"
rrl_edge build --onnx "$OUT/rrl.onnx" --engine "$OUT/fp16.plan" --fp16
rrl_edge build --onnx "$OUT/rrl.int8.onnx" --engine "$OUT/int8.plan"
echo "== parity against $CHECKPOINT on $DATA"
rrl_edge parity --reference "$CHECKPOINT" \
    --candidate "$OUT/rrl.onnx" --candidate "$OUT/fp32.plan" --candidate "$OUT/fp16.plan" --candidate "$OUT/int8.plan" \
    --data "$DATA" --budget 0.3 --json "$OUT/parity.json" --plot "$OUT/parity.png"
echo "GPU parity: report $OUT/parity.json, ROC plot $OUT/parity.png"
