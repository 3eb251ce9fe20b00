#!/usr/bin/env bash
# Start a Chroma server for mlrag's server mode, then point mlrag at it:
#   scripts/start-chroma.sh [DATA_PATH] [PORT]
#   MLRAG_CHROMA_URL=http://127.0.0.1:8001 .venv/bin/mlrag ingest --mirror ../shared/corpus/linked
# Binds 127.0.0.1 only; put it behind your own proxy/auth before exposing it.
# The ingest lock lives in the local data dir: run one ingest job per server.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_PATH="${1:-data/chroma-server}"
PORT="${2:-8001}"
mkdir -p "$DATA_PATH"
exec .venv/bin/chroma run --path "$DATA_PATH" --host 127.0.0.1 --port "$PORT"
