#!/usr/bin/env bash
# Prepared GPU smoke run: under 8 minutes on one H100/H200, nothing installed beyond the pinned environment.
# On the lent device machine (its own Python with torch, timm, onnxruntime, scikit-learn; no albumentations,
# faiss or papermill) carry those as wheels in .whl/ (see the device README) and run:
#   bash benchmarks/gpu_smoke.sh
# Locally on the CPU with tiny sizes: bash benchmarks/gpu_smoke.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import albumentations, faiss" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
exec timeout 480 $PY benchmarks/gpu_smoke.py "$@"
