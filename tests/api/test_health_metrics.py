"""Health, readiness, Prometheus metrics, request ids, the access log and the docs."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient


def test_health_is_always_up(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_reflects_the_index(client, fake_rag) -> None:
    assert client.get("/ready").status_code == 200
    fake_rag.ready = False
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_a_failed_start_keeps_health_up_and_ready_down(settings, monkeypatch) -> None:
    import api.app
    from rag.errors import ModelUnavailableError

    def broken(_settings):
        raise ModelUnavailableError("embedding model missing")

    monkeypatch.setattr(api.app, "load_rag", broken)
    with TestClient(api.app.create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert (
            ready.status_code == 503
            and "embedding model missing" in ready.json()["error"]["message"]
        )
        # Other routes answer with the cause of the failed start, not a generic code.
        ask = client.post("/v1/ask", json={"question": "What is overfitting?"})
        assert ask.status_code == 503 and ask.json()["error"]["code"] == "model_unavailable"


def test_real_empty_data_dir_is_not_ready(settings, embedder, monkeypatch) -> None:
    import api.app
    from rag.pipeline import RAG

    monkeypatch.setattr(api.app, "load_rag", lambda s: RAG(s, embedder=embedder))
    with TestClient(api.app.create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        response = client.post("/v1/search", json={"query": "overfitting"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "empty_index"


def test_metrics_record_routes_timings_tokens_and_abstentions(client, fake_rag) -> None:
    client.post("/v1/ask", json={"question": "What is overfitting?"})
    client.post("/v1/ask", json={"question": "What is overfitting?", "stream": True})
    client.post("/v1/search", json={"query": "overfitting"})
    fake_rag.abstain = True
    client.post("/v1/ask", json={"question": "Cake?"})
    client.get("/v1/ingest/does-not-exist-123")
    client.get("/no/such/page")
    text = client.get("/metrics").text
    assert (
        'mlrag_http_request_duration_seconds_count{method="POST",route="/v1/ask",status="200"} 3.0'
        in text
    )
    assert (
        'mlrag_http_request_duration_seconds_count{method="POST",route="/v1/search",status="200"} 1.0'
        in text
    )
    assert 'route="/no/such/page"' not in text and 'route="unmatched"' in text
    assert 'mlrag_generation_seconds_count{generator="extractive"} 3.0' in text
    assert 'mlrag_retrieval_seconds_count{retriever="hybrid"} 4.0' in text
    # 5 words (JSON answer) + 5 streamed token events; abstentions produce their own text.
    assert 'mlrag_generated_tokens_total{generator="extractive"}' in text
    assert 'mlrag_abstentions_total{generator="extractive"} 1.0' in text
    assert 'mlrag_answers_total{generator="extractive"} 3.0' in text


def test_metrics_are_per_app(make_client) -> None:
    first, second = make_client(), make_client()
    first.post("/v1/ask", json={"question": "What is overfitting?"})
    assert 'route="/v1/ask"' in first.get("/metrics").text
    assert 'route="/v1/ask"' not in second.get("/metrics").text


def test_request_id_is_returned_and_logged_as_one_json_line(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="api.access")
    response = client.post(
        "/v1/ask", json={"question": "What is overfitting?"}, headers={"X-Request-ID": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    evil = client.get("/health", headers={"X-Request-ID": "x\r\ny" + "z" * 100}).headers[
        "x-request-id"
    ]
    assert evil != "x\r\ny" + "z" * 100 and len(evil) == 32
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "api.access"]
    ask = next(line for line in lines if line["request_id"] == "abc-123")
    assert ask["method"] == "POST" and ask["route"] == "/v1/ask" and ask["status"] == 200
    assert ask["duration_ms"] >= 0 and ask["timings_ms"] == {
        "retrieve": 2.0,
        "generate": 3.0,
        "total": 5.0,
    }
    assert ask["generator"] == "extractive" and ask["abstained"] is False
    assert "What is overfitting" not in caplog.text, "questions do not belong in the access log"


def test_streamed_requests_are_logged_after_the_stream(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="api.access")
    client.post("/v1/ask", json={"question": "What is overfitting?", "stream": True})
    line = json.loads([r for r in caplog.records if r.name == "api.access"][-1].getMessage())
    assert line["stream"] is True and line["timings_ms"]["generate"] == 3.0


def test_docs_and_openapi(client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/ask",
        "/v1/search",
        "/v1/chat/completions",
        "/v1/ingest",
        "/v1/sources",
        "/health",
        "/ready",
    } <= set(paths)


def test_config_lists_names(client) -> None:
    body = client.get("/v1/config").json()
    assert body["retrievers"] == ["dense", "bm25", "hybrid"]
    assert "extractive" in body["generators"] and body["adapters"] == ["my-adapter"]
    assert body["max_question_chars"] == 2000


def test_sources_lists_documents_with_chunk_counts(make_client, real_rag) -> None:
    body = make_client(rag=real_rag).get("/v1/sources").json()
    by_id = {d["doc_id"]: d for d in body["documents"]}
    assert by_id["overfitting"]["chunks"] == 2 and by_id["pca"]["chunks"] == 1
    assert body["total_documents"] == 6 and body["total_chunks"] == 7


def test_chat_page_is_served_without_external_resources(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'name="viewport"' in html and 'aria-live="polite"' in html
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        assert "https://" not in response.text and "http://" not in response.text


def test_answer_cache_hits_and_misses_are_counted(client, fake_rag) -> None:
    import dataclasses

    client.post("/v1/ask", json={"question": "What is overfitting?"})
    original = fake_rag._answer
    fake_rag._answer = lambda *a: dataclasses.replace(original(*a), cached=True)  # type: ignore[method-assign]
    client.post("/v1/ask", json={"question": "What is overfitting?"})
    text = client.get("/metrics").text
    assert 'mlrag_answer_cache_total{result="miss"} 1.0' in text
    assert 'mlrag_answer_cache_total{result="hit"} 1.0' in text
