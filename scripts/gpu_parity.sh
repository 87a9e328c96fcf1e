#!/usr/bin/env bash
# GPU parity: export the shipped model, then on this machine's GPU
#   - with TensorRT + pycuda: `rrl-edge device-check` (FP32 / FP16 / INT8 engines, FPR95 parity per category
#     against PyTorch, benchmark, INT8 kernels) and `rrl-edge parity` of the engines;
#   - with a CUDA build of PyTorch: the checkpoint on CUDA through `rrl-edge run`, `parity` and `bench`
#     (a desktop GPU without TensorRT gets numbers too).
# At least one of the two is needed; each part that cannot run says why in one line.
#
#   scripts/gpu_parity.sh [DATA_DIR] [OUT_DIR]
#     DATA_DIR  VIS-NIR image-pair folder (default: $RRL_EDGE_DATA/vis-nir, else ../shared/data/vis-nir)
#     OUT_DIR   where the ONNX files, engines and reports go (default: gpu-parity)
#   CHECKPOINT=path.pt  compare another checkpoint (default: the default shipped model, export's)
#   DEPLOY=deploy/      an export folder written on a workstation (`rrl-edge export --int8 --out-dir deploy/`):
#                       nothing is exported here and no torch is needed (a Jetson set up by setup_device.sh);
#                       the engines are checked against the PyTorch scores the export saved (device-check)
#   PYTHON=...          the Python that has rrl-edge (and tensorrt, pycuda, or a CUDA torch)
#
# Writes OUT_DIR/device-check.json, OUT_DIR/parity*.json/png, OUT_DIR/bench-cuda.json; exits non-zero when
# a check fails. Exporting here needs the workstation extras (bash scripts/setup.sh); DEPLOY does not.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=python3; fi
fi
# -I: run the installed rrl_edge, not the checkout's source tree (the current folder), which is not a package layout
rrl_edge() { "$PYTHON" -I -c 'import sys; from rrl_edge.cli import main; sys.exit(main())' "$@"; }

TRT_STATUS=$("$PYTHON" -I - <<'PY'
from rrl_edge.export.tensorrt_build import tensorrt_status
ok, reason = tensorrt_status()
if ok:
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        ok, reason = False, "pycuda is not installed"
print(("yes " if ok else "no ") + reason)
PY
)
TORCH_STATUS=$("$PYTHON" -I -c 'import torch; print("yes" if torch.cuda.is_available() else "no", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo "no torch not installed")
echo "TensorRT: ${TRT_STATUS#* } | PyTorch CUDA: ${TORCH_STATUS#* }"
if [ "${TRT_STATUS%% *}" != yes ] && [ "${TORCH_STATUS%% *}" != yes ]; then
    echo "GPU parity needs TensorRT + pycuda or a CUDA build of PyTorch, and an NVIDIA GPU; neither is here." >&2
    exit 1
fi

if [ -n "${DEPLOY:-}" ]; then
    [ -f "$DEPLOY/rrl.reference.json" ] || { echo "GPU parity: $DEPLOY/rrl.reference.json not found (DEPLOY must be a folder \`rrl-edge export --int8 --out-dir\` wrote)" >&2; exit 2; }
    [ "${TRT_STATUS%% *}" = yes ] || { echo "GPU parity: DEPLOY checks TensorRT engines, but TensorRT is not usable here: ${TRT_STATUS#* }" >&2; exit 1; }
    OUT=${2:-gpu-parity}
    mkdir -p "$OUT"
    echo "== device check of $DEPLOY: TensorRT FP32 / FP16 / INT8 engines against the export's PyTorch scores"
    status=0
    rrl_edge device-check --deploy "$DEPLOY" --json "$OUT/device-check.json" --work-dir "$OUT/engines" || status=$?
    echo "GPU parity: report in $OUT/device-check.json (exit $status)"
    exit $status
fi
"$PYTHON" -I -c 'import torch' 2>/dev/null || { echo "GPU parity: no torch here to export the checkpoint; on a device pass DEPLOY=folder from \`rrl-edge export --int8\` on a workstation" >&2; exit 2; }

DATA=${1:-}
if [ -z "$DATA" ]; then
    DATA=$("$PYTHON" -I -c 'from rrl_edge.data.build import default_data_root; print(default_data_root() / "vis-nir")')
fi
OUT=${2:-gpu-parity}
CHECKPOINT=${CHECKPOINT:-$("$PYTHON" -I -c 'from rrl_edge.checkpoint import shipped_checkpoint; print(shipped_checkpoint())')}
[ -d "$DATA" ] || { echo "GPU parity: data folder $DATA not found (pass the VIS-NIR folder as the first argument)" >&2; exit 1; }
[ -f "$CHECKPOINT" ] || { echo "GPU parity: checkpoint $CHECKPOINT not found" >&2; exit 1; }
mkdir -p "$OUT"

echo "== export (FP32 and INT8 ONNX, test pairs and PyTorch's scores) to $OUT"
rrl_edge export --model "$CHECKPOINT" --int8 --out-dir "$OUT" --quiet
status=0
if [ "${TRT_STATUS%% *}" = yes ]; then
    echo "== device check: TensorRT FP32 / FP16 / INT8 engines"
    rrl_edge device-check --deploy "$OUT" --json "$OUT/device-check.json" --work-dir "$OUT/engines" || status=1
    echo "== parity of the engines against $CHECKPOINT on $DATA"
    rrl_edge parity --reference "$CHECKPOINT" --candidate "$OUT/rrl.onnx" --candidate "$OUT/engines/rrl.fp32.plan" \
        --candidate "$OUT/engines/rrl.fp16.plan" --candidate "$OUT/engines/rrl.int8.plan" \
        --data "$DATA" --budget 0.3 --json "$OUT/parity.json" --plot "$OUT/parity.png" || status=1
fi
if [ "${TORCH_STATUS%% *}" = yes ]; then
    echo "== PyTorch on CUDA: run, parity (reference: FP32 ONNX on the CPU), bench"
    rrl_edge run --model "$CHECKPOINT" --backend torch --device cuda --data "$DATA" --out "$OUT/scores-cuda.npy" || status=1
    RRL_EDGE_TORCH_DEVICE=cuda rrl_edge parity --reference "$OUT/rrl.onnx" --candidate "$CHECKPOINT" --data "$DATA" \
        --budget 0.3 --json "$OUT/parity-cuda.json" --plot "$OUT/parity-cuda.png" || status=1
    RRL_EDGE_TORCH_DEVICE=cuda rrl_edge bench "$CHECKPOINT" "$OUT/rrl.onnx" --batch 1,8,64,256 --json "$OUT/bench-cuda.json" || status=1
fi
echo "GPU parity: reports in $OUT (exit $status)"
exit $status
