#!/usr/bin/env bash
# Create .venv (if missing) and install metarl into it, with the CPU build of torch on machines
# without an NVIDIA GPU, so set-up never pulls multi-GB CUDA wheels by accident.
# Usage: scripts/install.sh [EXTRAS]      e.g. scripts/install.sh dev   (adds pytest, ruff, SB3)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "error: metarl needs Python >= 3.10 (set PYTHON=/path/to/python3.x)" >&2; exit 2; }
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" torch                                   # GPU machine: the default (CUDA) build
  else
    # CPU build: a local wheel index may carry it as torch==X+cpu; else PyTorch's CPU index.
    "${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null \
      || "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${pip[@]}" -e ".${extras:+[$extras]}"
echo "metarl installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
