#!/usr/bin/env bash
# Set up a virtual environment with everything needed to train, evaluate and test (CPU only).
# torch is pinned to 2.13.0: on the project's machines that is a CPU build on local disk; an unpinned
# torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RRL_EDGE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[train,export,dev]"
"$VENV/bin/python" -m pip install --quiet --no-deps "tensorrt-stubs==10.13.0.35.1"  # types only: see pyproject dev
echo "environment ready: $VENV (activate with: source $VENV/bin/activate)"
