"""``mlrag search``: JSON, human and stdin batch output, and its error exits."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import cli.main
from rag.config import Settings
from rag.embeddings import Embedder
from rag.retrieval.registry import RETRIEVER_NAMES
from rag.store import ChunkStore
from tests.rag.test_retrievers import fill_store, make_chunks


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder) -> Path:
    """MLRAG_* pointing at a private data dir; the CLI reuses the session's embedder."""
    data = tmp_path / "data"
    monkeypatch.setenv("MLRAG_DATA_DIR", str(data))
    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    # Only our subcommand: others' modules may not exist yet while the project is built.
    monkeypatch.setattr(cli.main, "COMMAND_MODULES", ("cli.search",))
    monkeypatch.setattr(Embedder, "from_settings", classmethod(lambda cls, settings: embedder))
    return data


@pytest.fixture
def filled_data_dir(data_dir: Path, embedder) -> Path:
    store = ChunkStore.from_settings(Settings(data_dir=data_dir, torch_threads=1), embedder)
    fill_store(store, embedder, make_chunks())
    return data_dir


def test_json_output(filled_data_dir: Path, capsys) -> None:
    code = cli.main.main(
        ["search", "np.linalg.eig eigenvalues", "--retriever", "hybrid", "--k", "3", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == "np.linalg.eig eigenvalues"
    assert len(out["hits"]) == 3
    top = out["hits"][0]
    assert top["section"] == "Eigenvalues" and top["rank"] == 1 and top["retriever"] == "hybrid"
    assert set(top) >= {
        "chunk_id",
        "doc_id",
        "text",
        "source",
        "title",
        "url",
        "section",
        "topic",
        "score",
    }


def test_topic_filter(filled_data_dir: Path, capsys) -> None:
    code = cli.main.main(
        ["search", "matrix data", "--topic", "numpy", "--topic", "pytorch", "--k", "10", "--json"]
    )
    assert code == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and {h["topic"] for h in hits} <= {"numpy", "pytorch"}


def test_human_output(filled_data_dir: Path, capsys) -> None:
    assert (
        cli.main.main(
            ["search", "fit_transform leaking statistics", "--retriever", "bm25", "--k", "2"]
        )
        == 0
    )
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(" 1. [") and "Preprocessing data > Standardization" in first
    assert "https://docs.example/sklearn-pre" in out
    assert "StandardScaler removes the mean" in out


def test_stdin_batch_writes_one_json_line_per_query(
    filled_data_dir: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("PR-AUC fraud\n\nGradScaler float16\n"))
    assert cli.main.main(["search", "-", "--k", "2", "--retriever", "dense"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["query"] for r in records] == ["PR-AUC fraud", "GradScaler float16"]
    assert records[1]["hits"][0]["section"] == "GradScaler"
    assert all(len(r["hits"]) == 2 for r in records)


def test_unknown_retriever_exits_2_listing_names(data_dir: Path, capsys) -> None:
    assert cli.main.main(["search", "anything", "--retriever", "sparse"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert all(name in err for name in RETRIEVER_NAMES)


def test_bad_k_exits_2(data_dir: Path, capsys) -> None:
    assert cli.main.main(["search", "anything", "--k", "0"]) == 2
    assert "k must be" in capsys.readouterr().err


@pytest.mark.parametrize("retriever", ["dense", "hybrid"])
def test_empty_index_exits_1_with_one_line(data_dir: Path, capsys, retriever: str) -> None:
    assert cli.main.main(["search", "anything", "--retriever", retriever]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ingest" in err
