#!/usr/bin/env bash
# mypy on the TensorRT code (engine build, and the device's TensorRT runner and engine manifest checks),
# against the pinned tensorrt-stubs (TensorRT itself needs a GPU to install), and on the calibration
# package. Settings: scripts/mypy.ini. The stubs are TensorRT 10's: the runner's TensorRT 8.5/8.6 path
# (binding indices) uses calls 10 removed and is left untyped there.
#
# mypy 2.x checks Python 3.10 and later only (--python-version 3.8 is refused), so the Python 3.8 syntax
# of the device modules is checked by tests/test_typecheck.py with ast instead.
#
# mypy cannot follow setuptools' package-dir mapping (export/ installs as rrl_edge.export), and
# tensorrt-stubs ships bare .pyi files without a py.typed marker, some of them not valid Python
# (stubgen kept parameters named `in`, and one parameter without a default after defaulted ones).
# So mypy runs on a temporary tree: symlinks to the package, and repaired copies of the stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/rrl_edge"
for entry in rrl_edge/*; do ln -s "$root/$entry" "$tree/rrl_edge/"; done
ln -s "$root/export" "$tree/rrl_edge/export"
ln -s "$root/calibration" "$tree/rrl_edge/calibration"
ln -s "$root/runtime" "$tree/rrl_edge/runtime"
"$PYTHON" - "$tree" <<'PY'
import os, re, sys
import tensorrt_stubs

site = os.path.dirname(os.path.dirname(tensorrt_stubs.__file__))
for package in ("tensorrt", "tensorrt_bindings"):
    os.makedirs(os.path.join(sys.argv[1], package))
    for name in os.listdir(os.path.join(site, package)):
        if name.endswith(".pyi"):
            text = open(os.path.join(site, package, name)).read()
            text = re.sub(r"([(,] ?)in: ", r"\1in_: ", text)  # `in` is a keyword
            text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
            open(os.path.join(sys.argv[1], package, name), "w").write(text)
PY
cd "$tree"
MYPYPATH=$tree "$PYTHON" -m mypy --config-file "$root/scripts/mypy.ini" --cache-dir "$tree/.mypy_cache" \
    rrl_edge/export/tensorrt_build.py rrl_edge/export/gpu.py rrl_edge/export/device_check.py \
    rrl_edge/calibration/sampling.py rrl_edge/calibration/quantize.py \
    rrl_edge/runtime/tensorrt_runner.py rrl_edge/manifest.py rrl_edge/fpr95_table.py "$@"
echo "mypy: the TensorRT build code, the TensorRT runner, the FPR95 table and the calibration package type-check against tensorrt-stubs"
