#!/usr/bin/env bash
# A model-runtime environment on a CPU build of torch (no torchvision / timm / open_clip), for
# benchmarks/bench_runtime_rss.py. On our machines the CPU build is torch 2.13.0 on local disk;
# elsewhere use `pip install torch --index-url https://download.pytorch.org/whl/cpu`.
# usage: bash benchmarks/make_run_venv.sh [/tmp/geopix-run-venv]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/geopix-run-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -e ".[run]"
"$VENV/bin/python" -c "import torch, importlib.util as u; print('torch', torch.__version__, 'torchvision', bool(u.find_spec('torchvision')))"
