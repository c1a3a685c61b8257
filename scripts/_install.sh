#!/usr/bin/env bash
# Shared install step for scripts/demo and scripts/test: keep the user's torch, else the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  # A CPU wheel of torch 2.13.0 is on this machine's disk; elsewhere fall back to PyTorch's CPU index
  # (a plain `pip install torch` would pull a multi-GB CUDA build).
  "$PY" -m pip install torch==2.13.0 || "$PY" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install -q -e ".[${1:-test}]"
# Compile UMAP's numba kernels into numba's on-disk cache once per machine (about 30-45 s the first
# time on 2 cores, about 1 s once cached), so no kernel's first UMAP waits for the compiler.
"$PY" -c "from geowidgets.geometry import warm_up_umap; warm_up_umap(wait=True)"
