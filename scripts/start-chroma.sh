#!/usr/bin/env bash
# Start a Chroma server for mlrag's server mode, then point mlrag at it:
#   scripts/start-chroma.sh [DATA_PATH] [PORT]
#   MLRAG_CHROMA_URL=http://127.0.0.1:8001 .venv/bin/mlrag ingest --mirror ../shared/corpus/linked
# Binds 127.0.0.1 only; put it behind your own proxy/auth before exposing it.
# Ingests are serialised by a lease lock stored in this server (collection <name>-locks,
# see ingest/store_lock.py), so mlrag ingest runs and API workers on any machine may share it
# (their clocks must agree to well within the lock's 60 s lease).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_PATH="${1:-data/chroma-server}"
PORT="${2:-8001}"
mkdir -p "$DATA_PATH"
exec .venv/bin/chroma run --path "$DATA_PATH" --host 127.0.0.1 --port "$PORT"
