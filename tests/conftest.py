"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI clones the project into a fresh folder with shared/ beside it, as on developer machines.
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
LINKED = SHARED_CORPUS / "linked"
ML_PAGE = REPO_ROOT / "corpus" / "machine-learning.txt"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's MLRAG_* settings, API keys or mlrag.toml."""
    for key in list(os.environ):
        if key.startswith("MLRAG_") or key in {
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        }:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLRAG_CONFIG", "/nonexistent/mlrag.toml")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def settings(tmp_path: Path):
    """Settings with a private data dir and one torch thread."""
    from rag.config import Settings

    return Settings(data_dir=tmp_path / "data", torch_threads=1)


@pytest.fixture(scope="session")
def embedder():
    """The packaged MiniLM embedder, loaded once per test session."""
    from rag.embeddings import Embedder

    return Embedder("sentence-transformers/all-MiniLM-L6-v2", threads=1)


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    if not LINKED.joinpath("MANIFEST.json").exists():
        pytest.skip(f"shared corpus not found at {SHARED_CORPUS}")
    return SHARED_CORPUS
