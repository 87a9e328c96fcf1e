#!/usr/bin/env bash
# The main job end to end with one model, the default shipped one (rrl_edge.checkpoint.DEFAULT_MODEL: the joint
# VIS-NIR + VIS-LWIR network), on one set of pairs, the VIS-NIR test split as `rrl-edge eval` cuts it
# (run scripts/setup.sh first):
#   1. eval:   FPR95 of the PyTorch model and of the SIFT baseline on every test pair;
#   2. export: ONNX, onnxsim, INT8 Q/DQ calibrated on training pairs and proven on the same test pairs
#              (rrl-edge parity's rule), and the TensorRT engine where TensorRT and a GPU exist;
#   3. run:    the device runtime scores the test pairs with what a device would load (the engine if one was
#              built, else the INT8 model through ONNX Runtime);
#   4. the closing table: FPR95 per category of the PyTorch model (1) and of the deployed artifact (3).
# Everything lands in $RRL_EDGE_OUT (default main-job/).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RRL_EDGE_VENV:-.venv}
out=${RRL_EDGE_OUT:-main-job}
data=${RRL_EDGE_DATA:-../shared/data}/vis-nir
rrl_edge="$venv/bin/rrl-edge"
if [ ! -x "$rrl_edge" ]; then
    echo "main_job: $rrl_edge not found; run 'bash scripts/setup.sh' first" >&2
    exit 2
fi
mkdir -p "$out"
marker=$(mktemp "$out/.started.XXXXXX")  # what the job writes is newer than this
trap 'rm -f "$marker"' EXIT
model=$("$venv/bin/python" -c "from rrl_edge.checkpoint import shipped_checkpoint; print(shipped_checkpoint())")
started=$SECONDS

echo "== 1/4 eval: $model and SIFT on the VIS-NIR test pairs"
"$rrl_edge" eval --model "$model" --data "$data" --baseline sift --json "$out/eval.json" --roc "$out/roc.png"

echo "== 2/4 export: $model to ONNX and INT8, proven on the same test pairs; a TensorRT engine where possible"
"$rrl_edge" export --model "$model" --int8 --eval-data "$data" --out-dir "$out/deploy"

artifact="$out/deploy/rrl.int8.onnx"
[ -f "$out/deploy/rrl.plan" ] && artifact="$out/deploy/rrl.plan"
echo "== 3/4 run: the device runtime scores the same test pairs with $artifact"
"$rrl_edge" run --model "$artifact" --data "$data" --out "$out/scores.csv" --json "$out/run.json"

echo "== 4/4 the model evaluated (1) against the artifact deployed (3)"
"$venv/bin/python" scripts/fpr95_table.py "$out/eval.json" "$out/run.json" | tee "$out/summary.md"
echo "main_job: done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s; it wrote:"
find "$out" -type f -newer "$marker" ! -name '.*' | sort | while read -r f; do
    printf '  %-48s %s\n' "$f" "$(du -h "$f" | cut -f1)"
done
