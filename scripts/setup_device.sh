#!/usr/bin/env bash
# Set up the device side (no torch): a venv that runs `rrl-edge run`, `build`, `device-check` and `pytest -m gpu`.
#
#   bash scripts/setup_device.sh                 # TensorRT + pycuda: a Jetson (JetPack 5 / 6) or a desktop GPU
#   bash scripts/setup_device.sh --onnxruntime   # ONNX Runtime on the CPU instead (a machine without TensorRT)
#
#   RRL_EDGE_VENV=DIR   the venv (default .venv; made with --system-site-packages, where JetPack's TensorRT lives)
#   PYTHON=python3.X    the interpreter that makes it (default python3: the system's, the one TensorRT is built for)
#   CUDA_ROOT=DIR       the CUDA toolkit pycuda is compiled against (default: nvcc on PATH, else /usr/local/cuda)
#
# What it does, in order: upgrades the venv's pip (JetPack 5's pip 20.0 cannot install a pyproject-only project
# editable, and an old pip cannot read every wheel's metadata), installs rrl-edge with its `device` extra (not
# editable: rerun this after a `git pull`), keeps numpy below 2 on a Jetson (JetPack's TensorRT bindings are built
# against numpy 1.x), checks the TensorRT it sees against the range rrl-edge supports (pip installs it on a desktop;
# JetPack's comes from apt), compiles pycuda against the local CUDA (no pycuda wheel exists: pip builds it from
# source and needs nvcc and cuda.h), and ends with one line per component. Each failure is one line that says what
# to do; exit 2.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${RRL_EDGE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
BACKEND=tensorrt
for arg in "$@"; do
    case "$arg" in
        --onnxruntime) BACKEND=onnxruntime ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup_device.sh: unknown option $arg (expected --onnxruntime)" >&2; exit 2 ;;
    esac
done
fail() { echo "setup_device.sh: $*" >&2; exit 2; }

JETSON=no
if [ -f /etc/nv_tegra_release ]; then JETSON=yes; fi

# 1. The venv, with the system's site-packages visible (JetPack installs TensorRT's Python bindings there).
if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (set PYTHON to the Python that TensorRT is installed for)"
    "$PYTHON" -m venv --system-site-packages "$VENV" || fail "could not make $VENV (on Ubuntu: sudo apt install python3-venv)"
elif [ "$BACKEND" = tensorrt ] && grep -qi '^include-system-site-packages *= *false' "$VENV/pyvenv.cfg" 2>/dev/null \
        && [ "$JETSON" = yes ]; then
    fail "$VENV was made without --system-site-packages, so JetPack's TensorRT is invisible in it: remove it, or set RRL_EDGE_VENV to a new folder"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || fail "$VENV has Python $("$PY" -V 2>&1); rrl-edge needs 3.8 or newer"
PIP=("$PY" -m pip --disable-pip-version-check)
# Python snippets that import rrl_edge run isolated (-I): from the checkout, `python -c` would import the source
# tree's rrl_edge (whose runtime/ and export/ live beside it) instead of the installed one.

# 2. pip first: everything below needs a pip that builds pyproject-only projects and reads current metadata.
#    Capped at the last release for this Python: an index without Requires-Python metadata would otherwise hand
#    pip 20 a pip that refuses to install on 3.8 (seen with a mirror).
PIP_SPEC=$("$PY" -c 'import sys; print({(3, 8): "pip>=21.3,<25.1", (3, 9): "pip>=21.3,<26.1"}.get(sys.version_info[:2], "pip>=21.3"))')
"${PIP[@]}" install --quiet --upgrade "$PIP_SPEC" || fail "could not upgrade pip in $VENV (no network? pip install --upgrade pip by hand)"

# 3. rrl-edge and its device extra (numpy, progress bars, the pytest that runs on this Python), plus ONNX Runtime
#    when it stands in for TensorRT. On a Jetson numpy stays below 2 for JetPack's TensorRT bindings.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
if [ "$JETSON" = yes ]; then echo "numpy<2" > "$CONSTRAINTS"; fi
EXTRAS=device
if [ "$BACKEND" = onnxruntime ]; then EXTRAS=device,cpu; fi
"${PIP[@]}" install --quiet -c "$CONSTRAINTS" "$ROOT[$EXTRAS]" || fail "pip could not install rrl-edge[$EXTRAS] from $ROOT (its output above says why)"

# 4. TensorRT: JetPack's (apt), or pip's on a desktop; either way inside the supported range.
if [ "$BACKEND" = tensorrt ]; then
    RANGE=$("$PY" -I -c 'from rrl_edge.manifest import SUPPORTED_TENSORRT; print(SUPPORTED_TENSORRT)')
    if ! "$PY" -c 'import tensorrt; tensorrt.Runtime' 2>/dev/null; then
        if [ "$JETSON" = yes ]; then
            fail "JetPack's TensorRT Python bindings are not installed: sudo apt install python3-libnvinfer (JetPack 5 and 6), then run this again"
        fi
        "${PIP[@]}" install --quiet "tensorrt$RANGE" || fail "pip could not install tensorrt$RANGE (it needs an NVIDIA driver and a CUDA 12 runtime)"
    fi
    "$PY" -I -c 'import tensorrt; from rrl_edge.runtime.tensorrt_runner import check_tensorrt_version as c; c(tensorrt.__version__)' \
        || fail "the TensorRT this venv sees is outside $RANGE (above); use a JetPack or a pip TensorRT in that range"

    # 5. pycuda, compiled against this machine's CUDA (JetPack does not ship it; PyPI has only its source).
    if ! "$PY" -c 'import pycuda.driver' 2>/dev/null; then
        NVCC=$(command -v nvcc || true)
        CUDA=${CUDA_ROOT:-}
        if [ -z "$CUDA" ] && [ -n "$NVCC" ]; then CUDA=$(dirname "$(dirname "$NVCC")"); fi
        CUDA=${CUDA:-/usr/local/cuda}
        [ -x "$CUDA/bin/nvcc" ] && [ -f "$CUDA/include/cuda.h" ] \
            || fail "no CUDA toolkit at $CUDA (nvcc and cuda.h, needed to compile pycuda): on a Jetson: sudo apt install nvidia-jetpack (or cuda-toolkit-X-Y); elsewhere set CUDA_ROOT"
        "$PY" -c 'import os, sysconfig; p = sysconfig.get_paths()["include"]; raise SystemExit(not os.path.isfile(os.path.join(p, "Python.h")))' \
            || fail "Python's headers are missing (Python.h, needed to compile pycuda): sudo apt install python3-dev build-essential"
        PYCUDA=$(sed -n 's/^ *"\(pycuda[^"]*\)".*/\1/p' "$ROOT/pyproject.toml" | head -n 1)
        echo "compiling $PYCUDA against $CUDA (a few minutes on a Jetson)"
        PATH="$CUDA/bin:$PATH" CUDA_ROOT="$CUDA" CPATH="$CUDA/include${CPATH:+:$CPATH}" \
            LIBRARY_PATH="$CUDA/lib64:$CUDA/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" \
            "${PIP[@]}" install --quiet -c "$CONSTRAINTS" "$PYCUDA" || fail "pycuda did not compile against $CUDA (its output above says why)"
    fi
fi

# 6. What the venv now has, one line each.
"$PY" -I - "$BACKEND" <<'PY'
import sys
import numpy
from importlib import metadata

backend = sys.argv[1]
print(f"rrl-edge {metadata.version('rrl-edge')} | Python {sys.version.split()[0]} | numpy {numpy.__version__} "
      f"| pip {metadata.version('pip')}")
if backend == "tensorrt":
    import tensorrt
    import pycuda.driver as cuda

    cuda.init()
    gpus = [cuda.Device(i).name() for i in range(cuda.Device.count())]
    print(f"TensorRT {tensorrt.__version__} | pycuda {metadata.version('pycuda')} | GPUs: {', '.join(gpus) or 'none'}")
else:
    import onnxruntime

    print(f"ONNX Runtime {onnxruntime.__version__} (CPU) stands in for TensorRT")
PY
echo "device environment ready: $VENV (activate with: source $VENV/bin/activate); next: rrl-edge device-check --deploy deploy/ --json report.json"
