#!/usr/bin/env bash
# Check the 'openai' generator against vLLM with a local base model and two LoRA adapters on
# this machine's GPU; prints time to first token and tokens/s. Skips cleanly (exit 0, one line)
# without a GPU or without vLLM.
#
#   scripts/gpu-check.sh BASE a=/path/to/adapter-a b=/path/to/adapter-b
#   GPU_CHECK_BASE=... GPU_CHECK_ADAPTERS="a=... b=..." scripts/gpu-check.sh
#   VLLM_PYTHON=/opt/vllm/bin/python   the interpreter that has vLLM (default: the project's)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
VLLM_PYTHON=${VLLM_PYTHON:-$PY}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "SKIP gpu-check: no GPU: nvidia-smi not found"; exit 0
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "SKIP gpu-check: no GPU: nvidia-smi failed"; exit 0
fi
if ! "$VLLM_PYTHON" -c "import vllm" >/dev/null 2>&1; then
    echo "SKIP gpu-check: no vLLM: '$VLLM_PYTHON -c \"import vllm\"' failed"; exit 0
fi
export VLLM_PYTHON
exec "$PY" scripts/gpu_check.py "$@"
