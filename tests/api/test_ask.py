"""POST /v1/ask: JSON answers, SSE streams, validation, and the real pipeline end to end."""

from __future__ import annotations

import pytest

from tests.api.conftest import parse_sse


def test_ask_returns_the_answer_as_json(client, fake_rag) -> None:
    response = client.post(
        "/v1/ask", json={"question": "What is overfitting?", "k": 3, "retriever": "bm25"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == "Overfitting is learning noise [1]."
    assert body["citations"][0]["url"] == "https://example.org/overfitting"
    assert body["abstained"] is False
    assert body["timings_ms"]["total"] == 5.0
    call = fake_rag.calls[-1]
    assert (call["op"], call["question"], call["k"], call["retriever"]) == (
        "ask",
        "What is overfitting?",
        3,
        "bm25",
    )


def test_ask_passes_history_strict_filters_generator_and_adapter(client, fake_rag) -> None:
    body = {
        "question": "And how do I avoid it?",
        "history": [
            {"role": "user", "content": "What is overfitting?"},
            {"role": "assistant", "content": "Learning noise [1]."},
        ],
        "strict": True,
        "filters": {"topic": "ml"},
        "generator": "local",
        "adapter": "my-adapter",
    }
    assert client.post("/v1/ask", json=body).status_code == 200
    call = fake_rag.calls[-1]
    assert [(t.role, t.content) for t in call["history"]] == [
        ("user", "What is overfitting?"),
        ("assistant", "Learning noise [1]."),
    ]
    assert call["strict"] is True and call["filters"] == {"topic": "ml"}
    assert (call["generator"], call["adapter"]) == ("local", "my-adapter")


@pytest.mark.parametrize("how", ["flag", "accept"])
def test_ask_streams_tokens_then_one_answer_event(client, how) -> None:
    if how == "flag":
        response = client.post("/v1/ask", json={"question": "What is overfitting?", "stream": True})
    else:
        response = client.post(
            "/v1/ask",
            json={"question": "What is overfitting?"},
            headers={"Accept": "text/event-stream"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names == ["token"] * 5 + ["answer"]
    assert (
        "".join(data["text"] for name, data in events if name == "token")
        == "Overfitting is learning noise [1]."
    )
    answer = events[-1][1]
    assert answer["citations"][0]["n"] == 1 and answer["timings_ms"]["retrieve"] == 2.0


def test_abstention_has_no_citations(client, fake_rag) -> None:
    fake_rag.abstain = True
    body = client.post("/v1/ask", json={"question": "Best chocolate cake?"}).json()
    assert body["abstained"] is True and body["citations"] == []
    events = parse_sse(
        client.post("/v1/ask", json={"question": "Best chocolate cake?", "stream": True}).text
    )
    assert (
        events[-1][0] == "answer"
        and events[-1][1]["abstained"] is True
        and events[-1][1]["citations"] == []
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"question": ""}, 422, "validation_error"),
        ({"question": "   "}, 400, "invalid_input"),
        ({"question": "x" * 2001}, 400, "invalid_input"),
        ({"question": 42}, 422, "validation_error"),
        ({"question": "q", "k": 0}, 422, "validation_error"),
        ({"question": "q", "k": 51}, 400, "invalid_input"),
        ({"question": "q", "k": "many"}, 422, "validation_error"),
        ({"question": "q", "retriever": "magic"}, 400, "unknown_name"),
        ({"question": "q", "generator": "gpt-9"}, 400, "unknown_name"),
        ({"question": "q", "adapter": "nope"}, 400, "unknown_name"),
        (
            {"question": "q", "history": [{"role": "system", "content": "x"}]},
            422,
            "validation_error",
        ),
        ({"question": "q", "surprise": 1}, 422, "validation_error"),
        ({}, 422, "validation_error"),
    ],
)
def test_bad_requests_get_clear_json_errors(client, fake_rag, body, status, code) -> None:
    response = client.post("/v1/ask", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert not [c for c in fake_rag.calls if c["op"] == "ask"], (
        "invalid requests must not reach the pipeline"
    )


def test_bad_request_in_stream_mode_is_a_json_error_not_a_stream(client) -> None:
    response = client.post("/v1/ask", json={"question": "q", "retriever": "magic", "stream": True})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")


def test_empty_index_is_503_with_retry_after(client, fake_rag) -> None:
    fake_rag.ready = False
    for stream in (False, True):
        response = client.post(
            "/v1/ask", json={"question": "What is overfitting?", "stream": stream}
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "empty_index"
        assert response.headers["retry-after"]


# --- the real pipeline over a tiny store ----------------------------------------------------
def test_real_pipeline_answers_with_citations(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    body = client.post(
        "/v1/ask", json={"question": "What is overfitting?", "generator": "extractive"}
    ).json()
    assert body["abstained"] is False, body
    assert body["citations"], body
    assert any(c["url"] == "https://example.org/overfitting" for c in body["citations"])
    assert body["generator"] == "extractive" and body["retriever"] == "hybrid"
    assert set(body["timings_ms"]) >= {"retrieve", "generate", "total"}


def test_real_pipeline_streams_the_same_answer(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    plain = client.post(
        "/v1/ask", json={"question": "What does dropout do?", "generator": "extractive"}
    ).json()
    events = parse_sse(
        client.post(
            "/v1/ask",
            json={"question": "What does dropout do?", "generator": "extractive", "stream": True},
        ).text
    )
    assert events[-1][0] == "answer"
    assert any(name == "token" for name, _ in events)
    streamed = events[-1][1]
    assert streamed["text"] == plain["text"]
    assert [c["url"] for c in streamed["citations"]] == [c["url"] for c in plain["citations"]]


def test_real_pipeline_abstains_off_topic(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    body = client.post(
        "/v1/ask",
        json={"question": "Which wine goes with grilled salmon?", "generator": "extractive"},
    ).json()
    assert body["abstained"] is True and body["citations"] == []


def test_real_pipeline_uses_history_for_follow_ups(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    history = [
        {"role": "user", "content": "What is dropout?"},
        {
            "role": "assistant",
            "content": "Dropout randomly zeroes activations during training [1].",
        },
    ]
    body = client.post(
        "/v1/ask",
        json={"question": "Why does it help?", "history": history, "generator": "extractive"},
    ).json()
    assert body["abstained"] is False, body
    assert any(c["url"] == "https://example.org/dropout" for c in body["citations"]), body
