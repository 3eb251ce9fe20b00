"""POST /v1/chat/completions (OpenAI-compatible) and GET /v1/models."""

from __future__ import annotations

import json

import pytest

from api.routes.chat_completions import parse_model


def _data_lines(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def test_non_streaming_completion_has_openai_shape_and_numbered_sources(client, fake_rag) -> None:
    body = {
        "model": "mlrag",
        "temperature": 0.2,  # OpenAI options are accepted and ignored
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is overfitting?"},
            {"role": "assistant", "content": "Learning noise [1]."},
            {"role": "user", "content": [{"type": "text", "text": "How do I avoid it?"}]},
        ],
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "mlrag"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content.startswith("Overfitting is learning noise [1].")
    assert "Sources:\n[1] Overfitting — https://example.org/overfitting" in content
    assert '"Overfitting happens when a model learns the noise' in content
    assert set(data["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    call = fake_rag.calls[-1]
    assert call["question"] == "How do I avoid it?" and call["generator"] is None
    assert [(t.role, t.content) for t in call["history"]] == [
        ("user", "What is overfitting?"),
        ("assistant", "Learning noise [1]."),
    ]


def test_streaming_completion_sends_chunks_then_done(client) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "extractive",
            "stream": True,
            "messages": [{"role": "user", "content": "What is overfitting?"}],
        },
    )
    assert response.status_code == 200
    lines = _data_lines(response.text)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("Overfitting is learning noise [1].") and "Sources:" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_streaming_failure_sends_an_error_object_then_done(client, fake_rag) -> None:
    fake_rag.fail_after = 1
    response = client.post(
        "/v1/chat/completions",
        json={"stream": True, "messages": [{"role": "user", "content": "What is overfitting?"}]},
    )
    lines = _data_lines(response.text)
    assert lines[-1] == "[DONE]"
    assert json.loads(lines[-2])["error"]["code"] == "generation_failed"


def test_abstention_has_no_sources(client, fake_rag) -> None:
    fake_rag.abstain = True
    data = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Cake?"}]}
    ).json()
    assert "Sources:" not in data["choices"][0]["message"]["content"]
    assert data["abstained"] is True and data["citations"] == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("mlrag", (None, None)),
        ("", (None, None)),
        ("extractive", ("extractive", None)),
        ("local:my-adapter", ("local", "my-adapter")),
    ],
)
def test_model_names(model, expected) -> None:
    assert parse_model(model) == expected


def test_model_selects_generator_and_adapter(client, fake_rag) -> None:
    client.post(
        "/v1/chat/completions",
        json={"model": "local:my-adapter", "messages": [{"role": "user", "content": "q?"}]},
    )
    assert (fake_rag.calls[-1]["generator"], fake_rag.calls[-1]["adapter"]) == (
        "local",
        "my-adapter",
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]}, 400),
        ({"model": "local:ghost", "messages": [{"role": "user", "content": "q"}]}, 400),
        ({"messages": [{"role": "system", "content": "only a system message"}]}, 400),
        ({"messages": []}, 422),
        ({"messages": [{"role": "wizard", "content": "q"}]}, 422),
        ({"model": "mlrag"}, 422),
    ],
)
def test_bad_completion_requests(client, body, status) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_models_lists_generators_and_adapters(client) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert (
        ids[0] == "mlrag"
        and "extractive" in ids
        and "local:my-adapter" in ids
        and "auto" not in ids
    )


def test_real_pipeline_completion(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    data = client.post(
        "/v1/chat/completions",
        json={
            "model": "extractive",
            "messages": [{"role": "user", "content": "What is a random forest?"}],
        },
    ).json()
    content = data["choices"][0]["message"]["content"]
    assert "Sources:" in content and "https://example.org/random-forest" in content
    stream = client.post(
        "/v1/chat/completions",
        json={
            "model": "extractive",
            "stream": True,
            "messages": [{"role": "user", "content": "What is a random forest?"}],
        },
    )
    assert _data_lines(stream.text)[-1] == "[DONE]"
