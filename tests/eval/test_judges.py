"""The support judges: offline (embedding + lexical), NLI with a tiny local cross-encoder,
and Claude against the mocked Anthropic transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.judges.base import Judge, build_judge, supported
from eval.judges.claude import JUDGE_SYSTEM_PROMPT, ClaudeJudge, parse_verdict
from eval.judges.nli import NLIJudge, entailment_index
from rag.config import Settings
from rag.errors import ModelUnavailableError, UnknownNameError, UpstreamUnavailableError
from tests.rag.anthropic_fakes import (
    RecordingTransport,
    error_response,
    json_response,
    make_client,
    message_body,
)

CONTEXT = (
    "Dropout randomly sets a fraction of activations to zero during training. "
    "This stops neurons from co-adapting and reduces overfitting."
)


def test_offline_judge_separates_supported_from_unsupported(settings: Settings, embedder) -> None:
    judge = build_judge("offline", settings, embedder=embedder)
    assert isinstance(judge, Judge) and judge.threshold == settings.support_threshold
    pairs = [
        ("Dropout randomly sets a fraction of activations to zero during training.", [CONTEXT]),
        ("The Eiffel Tower is in Paris and was finished in 1889.", [CONTEXT]),
        ("Dropout reduces overfitting.", ["unrelated first passage about tensors", CONTEXT]),
    ]
    scores = judge.support(pairs)
    assert scores[0] >= 0.95 and scores[1] < 0.3 and scores[2] > 0.5
    assert supported(judge, pairs) == [True, False, True]
    assert "offline" in judge.describe() and "threshold 0.5" in judge.describe()


def save_tiny_nli(folder: Path, favour: str) -> Path:
    """A 1-layer BERT NLI classifier whose zeroed weights and biased head always favour the
    label ``favour`` (so the judge's label mapping is what is tested)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rag.embeddings import resolve_embedding_model

    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2")
    )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=512, num_labels=3, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(
            torch.tensor([5.0 if labels[i] == favour else 0.0 for i in range(3)])
        )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def nli_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-nli")
    return {label: save_tiny_nli(root / label, label) for label in ("entailment", "contradiction")}


def test_nli_judge_reads_the_entailment_label(
    nli_dirs: dict[str, Path], settings: Settings
) -> None:
    yes = build_judge("nli", settings, nli_model=str(nli_dirs["entailment"]))
    no = NLIJudge(str(nli_dirs["contradiction"]))
    assert isinstance(yes, NLIJudge) and yes.entail == 1
    pairs = [("Dropout reduces overfitting.", [CONTEXT, "another passage"]), ("x", [])]
    # softmax([0, 5, 0])[1] = e^5 / (e^5 + 2) = 0.9867
    assert yes.support(pairs) == pytest.approx([0.9867, 0.9867], abs=1e-3)
    assert no.support(pairs) == pytest.approx([0.0066, 0.0066], abs=1e-3)
    assert supported(yes, pairs) == [True, True] and supported(no, pairs) == [False, False]
    assert "nli" in yes.describe()


def test_nli_judge_errors(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelUnavailableError):
        NLIJudge(str(tmp_path / "missing-model"))
    with pytest.raises(UnknownNameError, match="nli-model"):
        build_judge("nli", settings)
    with pytest.raises(UnknownNameError, match="offline, nli, claude"):
        build_judge("gpt", settings)
    assert entailment_index({0: "ENTAILMENT", 1: "NOT_ENTAILMENT"}) == 0
    assert entailment_index({0: "LABEL_0"}) is None


def test_claude_judge_scores_claims_against_the_mocked_api() -> None:
    reply = (
        '{"claims": [{"claim": "Dropout zeroes activations", "supported": true}, '
        '{"claim": "It was invented in 2020", "supported": false}]}'
    )
    transport = RecordingTransport(
        [json_response(message_body(reply)), json_response(message_body("no json here"))]
    )
    judge = ClaudeJudge(make_client(transport), "claude-sonnet-4-5")
    scores = judge.support(
        [("Dropout zeroes activations and was invented in 2020.", [CONTEXT]), ("x", [CONTEXT])]
    )
    assert scores == [0.5, 0.0]  # half the claims hold; an unparsable reply counts as unsupported
    body = transport.requests[0].body
    assert body["system"] == JUDGE_SYSTEM_PROMPT
    assert body["model"] == "claude-sonnet-4-5"
    content = body["messages"][0]["content"]
    assert "[1] Dropout randomly sets" in content and content.endswith(
        "Statement: Dropout zeroes activations and was invented in 2020."
    )
    assert supported(judge, [("a", [CONTEXT])]) == [False]  # last reply repeats: unparsable


def test_claude_judge_overload_is_a_typed_error() -> None:
    transport = RecordingTransport([error_response(529, "overloaded_error", "Overloaded")])
    judge = ClaudeJudge(make_client(transport, max_retries=1), "claude-sonnet-4-5")
    with pytest.raises(UpstreamUnavailableError):
        judge.support([("a", [CONTEXT])])
    assert len(transport.requests) == 2  # one retry


def test_claude_judge_needs_a_key(settings: Settings) -> None:
    with pytest.raises(ModelUnavailableError, match="ANTHROPIC_API_KEY"):
        build_judge("claude", settings)


def test_parse_verdict() -> None:
    assert parse_verdict('Sure: {"claims": [{"claim": "a", "supported": true}]} done') == 1.0
    assert parse_verdict('{"claims": []}') == 1.0
    assert parse_verdict('{"claims": [{"claim": "a", "supported": "yes"}]}') == 0.0
    assert parse_verdict('{"verdict": true}') is None and parse_verdict("nope") is None


class FixedJudge:
    """A judge with scripted scores, to test agreement bookkeeping."""

    name = "fixed"
    threshold = 0.5

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def support(self, pairs):  # type: ignore[no-untyped-def]
        return self.scores[: len(pairs)]

    def describe(self) -> str:
        return "fixed"


def test_judge_agreement_and_kappa(tmp_path: Path) -> None:
    import json

    from eval.judges.agreement import judge_agreement, load_labels

    labels = [
        "supported",
        "supported",
        "supported",
        "unsupported",
        "unsupported",
        "unsupported",
        "supported",
        "unsupported",
    ]
    rows = [
        {"id": f"jl-{i}", "sentence": f"s{i}", "context": ["c"], "label": lab}
        for i, lab in enumerate(labels)
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # Judge says supported for rows 0, 1, 4, 6 (agrees on 0, 1, 3, 5, 6, 7).
    result = judge_agreement(
        FixedJudge([0.9, 0.8, 0.1, 0.2, 0.7, 0.3, 0.6, 0.4]), load_labels(path)
    )
    assert (
        result["n"] == 8 and result["agreement"] == 0.75 and result["kappa"] == pytest.approx(0.5)
    )
    assert result["confusion"] == {
        "both_supported": 3,
        "both_unsupported": 3,
        "judge_only_supported": 1,
        "human_only_supported": 1,
    }
    assert [d["id"] for d in result["disagreements"]] == ["jl-2", "jl-4"]
    path.write_text('{"sentence": "x", "context": ["c"], "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="label"):
        load_labels(path)


def test_shipped_judge_labels_are_well_formed() -> None:
    from eval.judges.agreement import DEFAULT_LABELS, load_labels

    rows = load_labels(DEFAULT_LABELS)
    assert len(rows) >= 40
    assert {r["label"] for r in rows} == {"supported", "unsupported"}
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["question_id"].split("-")[0] and r["context"] for r in rows)
