"""``mlrag ask``: human and JSON output, stdin batch mode, one-line errors."""

from __future__ import annotations

import io
import json

import pytest

from cli.ask import run_ask
from cli.main import build_parser, main
from rag.abstention import ABSTAIN_TEXT
from rag.citations import quoted_parts
from rag.pipeline import RAG
from rag.store import ChunkStore
from tests.rag.answering_corpus import answering_settings, build_store, make_answer_store, make_rag

FRAUD = "Which metric should I use for imbalanced fraud detection?"


@pytest.fixture(scope="module")
def answer_store(tmp_path_factory: pytest.TempPathFactory, embedder) -> ChunkStore:
    return make_answer_store(tmp_path_factory, embedder)


@pytest.fixture
def rag_pipeline(tmp_path, embedder, answer_store: ChunkStore) -> RAG:
    return make_rag(tmp_path / "data", embedder, answer_store)


def _run(rag: RAG, *argv: str) -> int:
    args = build_parser().parse_args(["ask", *argv])
    return run_ask(args, rag.settings, rag=rag)


def test_human_output_shows_answer_and_numbered_sources(rag_pipeline: RAG, capsys) -> None:
    assert _run(rag_pipeline, FRAUD) == 0
    out = capsys.readouterr().out
    assert "PR-AUC" in out and "Sources:" in out
    assert "[1] Evaluation Metrics > Classification > Imbalanced data" in out
    assert "https://example.org/metrics#imbalanced" in out
    quote_lines = [line.strip() for line in out.splitlines() if line.strip().startswith('"')]
    chunk_text = rag_pipeline.search(FRAUD, k=1)[0].chunk.text
    assert quote_lines
    assert all(part in chunk_text for part in quoted_parts(quote_lines[0].strip('"')))


def test_json_output_is_the_answer_dict(rag_pipeline: RAG, capsys) -> None:
    assert _run(rag_pipeline, FRAUD, "--json", "--retriever", "dense", "--k", "3", "--strict") == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["question"] == FRAUD
        and data["retriever"] == "dense"
        and data["generator"] == "extractive"
    )
    assert data["citations"] and not data["abstained"]
    assert {"n", "chunk_id", "title", "url", "quote"} <= set(data["citations"][0])


def test_abstention_is_announced(rag_pipeline: RAG, capsys) -> None:
    assert _run(rag_pipeline, "What is the capital of Australia?") == 0
    out = capsys.readouterr().out
    assert out.startswith(ABSTAIN_TEXT) and "abstained" in out and "Sources:" not in out


def test_stdin_batch_writes_one_json_object_per_question(
    rag_pipeline: RAG, capsys, monkeypatch
) -> None:
    questions = [
        FRAUD,
        "",
        "What does the LoRA rank r control?",
        "What is the capital of Australia?",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(questions) + "\n"))
    assert _run(rag_pipeline, "-", "--topic", "metrics", "--topic", "llm") == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["question"] for r in records] == [q for q in questions if q]
    assert [r["abstained"] for r in records] == [False, False, True]


def test_stdin_conversation_asks_each_line_as_a_follow_up(
    rag_pipeline: RAG, capsys, monkeypatch
) -> None:
    lines = ["How does LoRA fine-tuning work?", "and what about its rank?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert _run(rag_pipeline, "-", "--conversation") == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["query"] == lines[0]
    # The follow-up was condensed with the first turn: its query names LoRA.
    assert second["question"] == lines[1] and "LoRA" in second["query"]
    # Without --conversation the same lines are independent questions.
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert _run(rag_pipeline, "-") == 0
    _, alone = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert alone["query"] == lines[1]


def test_conversation_needs_stdin(rag_pipeline: RAG, capsys) -> None:
    assert _run(rag_pipeline, "what is LoRA?", "--conversation") == 2
    assert "use '-'" in capsys.readouterr().err


def test_stdin_batch_reports_bad_lines_and_keeps_going(
    rag_pipeline: RAG, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 3000 + "\n" + FRAUD + "\n"))
    assert _run(rag_pipeline, "-") == 2
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["error"]["code"] == "invalid_input"
    assert second["question"] == FRAUD and second["citations"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["q", "--retriever", "nope"], "unknown retriever"),
        (["q", "--generator", "nope"], "unknown generator"),
        (["q", "--k", "0"], "k must be"),
        (["   "], "empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    rag_pipeline: RAG, capsys, argv: list[str], message: str
) -> None:
    assert _run(rag_pipeline, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlrag ask: error:") and message in err and err.count("\n") == 1


def test_main_end_to_end_and_empty_index(tmp_path, embedder, monkeypatch, capsys) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    monkeypatch.setenv("MLRAG_GENERATOR", "extractive")
    build_store(answering_settings(data_dir, collection="empty"), embedder, chunks=[])
    monkeypatch.setenv("MLRAG_COLLECTION", "empty")
    assert main(["ask", FRAUD]) == 1
    assert "index is empty" in capsys.readouterr().err
    monkeypatch.setenv("MLRAG_COLLECTION", "mlrag")
    build_store(answering_settings(data_dir), embedder)
    assert main(["ask", FRAUD, "--json", "--retriever", "dense"]) == 0
    assert json.loads(capsys.readouterr().out)["citations"]
