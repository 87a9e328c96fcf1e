#!/usr/bin/env bash
# The main job end to end, with the shipped VIS-NIR model (run scripts/setup.sh first):
#   1. eval:   FPR95 of the PyTorch model and of the SIFT baseline on every VIS-NIR test pair;
#   2. export: ONNX, onnxsim, INT8 Q/DQ calibrated on cross-spectral training pairs and proven on every test
#              pair, and the TensorRT engine where TensorRT and a GPU exist;
#   3. run:    the device runtime scores the test pairs with what a device would load (the engine if one was
#              built, else the INT8 model through ONNX Runtime).
# Everything lands in $RRL_EDGE_OUT (default main-job/). About 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RRL_EDGE_VENV:-.venv}
out=${RRL_EDGE_OUT:-main-job}
rrl_edge="$venv/bin/rrl-edge"
if [ ! -x "$rrl_edge" ]; then
    echo "main_job: $rrl_edge not found; run 'bash scripts/setup.sh' first" >&2
    exit 2
fi
mkdir -p "$out"

echo "== 1/3 eval: the default (joint) model and SIFT on the VIS-NIR test pairs"
"$rrl_edge" eval --baseline sift --json "$out/eval.json" --roc "$out/roc.png" --quiet

echo "== 2/3 export (the VIS-NIR model, export's default): ONNX, INT8 (proof on every test pair), TensorRT engine where possible"
"$rrl_edge" export --int8 --out-dir "$out/deploy" --quiet

artifact="$out/deploy/rrl.int8.onnx"
[ -f "$out/deploy/rrl.plan" ] && artifact="$out/deploy/rrl.plan"
echo "== 3/3 run: $artifact on the VIS-NIR test pairs"
"$rrl_edge" run --engine "$artifact" --data "${RRL_EDGE_DATA:-../shared/data}/vis-nir" \
    --out "$out/scores.csv" --json "$out/run.json" --quiet

echo "main_job: done; see $out/ (eval.json, roc.png, deploy/, scores.csv, run.json)"
