"""The inference-server backend seen through the API: its models in GET /v1/models and
/v1/config, and an upstream's Retry-After passed on to the client."""

from __future__ import annotations

from rag.errors import UpstreamTimeoutError, UpstreamUnavailableError


def test_models_and_config_list_the_servers_adapters(client, fake_rag) -> None:
    fake_rag.server_models = ["grounded-v3", "grounded-v4"]
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "openai:grounded-v3" in ids and "openai:grounded-v4" in ids
    assert "local:my-adapter" in ids
    config = client.get("/v1/config").json()
    assert config["openai_adapters"] == ["grounded-v3", "grounded-v4"]
    assert config["adapters"] == ["my-adapter"]


def test_openai_prefix_selects_the_generator_and_adapter(client, fake_rag) -> None:
    fake_rag.server_models = ["grounded-v3"]
    client.post(
        "/v1/chat/completions",
        json={"model": "openai:grounded-v3", "messages": [{"role": "user", "content": "q?"}]},
    )
    assert (fake_rag.calls[-1]["generator"], fake_rag.calls[-1]["adapter"]) == (
        "openai",
        "grounded-v3",
    )


def test_upstream_retry_after_reaches_the_client(client, fake_rag) -> None:
    fake_rag.raise_on_ask = UpstreamUnavailableError("busy", retry_after=7.2)
    response = client.post("/v1/ask", json={"question": "What is overfitting?"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "8"
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_upstream_timeout_is_504(client, fake_rag) -> None:
    fake_rag.raise_on_ask = UpstreamTimeoutError("no token for 60 s")
    response = client.post("/v1/ask", json={"question": "What is overfitting?"})
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
