#!/usr/bin/env bash
# Creates the reference Python environment (torch CPU + diffusers + transformers; onnxruntime + insightface) used
# to generate the tiny test fixtures and golden tensors, and by the side-by-side benchmark.
# Usage: tools/reference/setup.sh   (idempotent; the venv lives in tools/reference/.venv, gitignored)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c "import torch, diffusers, transformers, onnxruntime, insightface; print('reference env:', torch.__version__, diffusers.__version__, transformers.__version__, onnxruntime.__version__, insightface.__version__)"
