"""POST /v1/search."""

from __future__ import annotations

import pytest


def test_search_returns_hits(client, fake_rag) -> None:
    response = client.post(
        "/v1/search",
        json={"query": "overfitting", "k": 1, "retriever": "dense", "filters": {"topic": "ml"}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["retriever"] == "dense"
    assert body["hits"][0]["chunk_id"] == "overfitting#1" and body["hits"][0]["rank"] == 1
    assert "retrieve" in body["timings_ms"]
    assert fake_rag.calls[-1]["filters"] == {"topic": "ml"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": ""}, 422),
        ({"query": "x", "k": 500}, 400),
        ({"query": "x", "retriever": "nope"}, 400),
        ({"query": ["x"]}, 422),
    ],
)
def test_search_rejects_bad_input(client, body, status) -> None:
    response = client.post("/v1/search", json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"code", "message"}


def test_real_search_ranks_the_matching_document_first(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    for retriever in ("dense", "bm25", "hybrid"):
        body = client.post(
            "/v1/search",
            json={"query": "principal components variance", "k": 3, "retriever": retriever},
        ).json()
        assert body["hits"][0]["doc_id"] == "pca", (retriever, body)
        assert 1 <= len(body["hits"]) <= 3


def test_real_search_applies_filters(make_client, real_rag) -> None:
    client = make_client(rag=real_rag)
    body = client.post(
        "/v1/search",
        json={"query": "regularization", "k": 5, "filters": {"topic": "deep-learning"}},
    ).json()
    assert body["hits"] and {h["topic"] for h in body["hits"]} == {"deep-learning"}


def test_search_responses_match_the_documented_schema(client) -> None:
    from api.schemas import SearchResponse

    body = client.post("/v1/search", json={"query": "overfitting", "k": 1}).json()
    parsed = SearchResponse.model_validate(body)
    assert parsed.model_dump() == body  # nothing missing, nothing extra
