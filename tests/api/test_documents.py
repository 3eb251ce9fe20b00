"""The document view (``/v1/documents/{id}``, ``/documents/{id}``) and the links that make
citations of URL-less documents clickable in /v1/ask, chat completions and Slack."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from api.doc_links import document_path, link_citations, public_base_url
from rag.types import Answer, Chunk, Citation, Hit, make_chunk_id
from tests.api.conftest import parse_sse, tiny_chunks
from tests.api.test_slack import FakeSlackAPI, mention, post_event

USER_DOC = "file:machine-learning.txt"
LINKED_URL = "https://pytorch.org/tutorials/beginner/basics/quickstart_tutorial.html"
LINKED_DOC = f"url:{LINKED_URL}"
KDE_TEXT = (
    "Kernel density estimation is a non-parametric way to estimate the probability density "
    "function of a random variable by placing a smooth kernel on every observation."
)
KDE_POSITION = 2
USER_CHUNKS: list[tuple[str, str]] = [
    ("Machine Learning > Overview", "Machine learning studies algorithms that learn from data."),
    (
        "Machine Learning > Pitfalls <b>&</b>",
        'Never paste <script>alert("x")</script> into a notebook & trust it.',
    ),
    ("Machine Learning > Density estimation", KDE_TEXT),
]
LINKED_CHUNKS: list[tuple[str, str]] = [
    ("Quickstart > Working with data", "PyTorch has two primitives to work with data."),
    ("Quickstart > Creating models", "To define a neural network in PyTorch, subclass nn.Module."),
]


def _doc_chunks(
    doc_id: str, url: str, source: str, title: str, topic: str, parts: list[tuple[str, str]]
) -> list[Chunk]:
    return [
        Chunk(
            id=make_chunk_id(doc_id, text),
            doc_id=doc_id,
            text=text,
            section=section,
            position=position,
            metadata={"title": title, "url": url, "source": source, "topic": topic},
        )
        for position, (section, text) in enumerate(parts)
    ]


def corpus_chunks() -> list[Chunk]:
    """The tiny API corpus plus the user's URL-less page and a linked page."""
    user = _doc_chunks(
        USER_DOC, "", "machine-learning.txt", "Machine Learning", "machine-learning", USER_CHUNKS
    )
    linked = _doc_chunks(LINKED_DOC, LINKED_URL, LINKED_URL, "Quickstart", "pytorch", LINKED_CHUNKS)
    # Stored out of order: the routes must sort by position, not trust insertion order.
    return [*tiny_chunks(), *reversed(user), *reversed(linked)]


@pytest.fixture(scope="module")
def docs_data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    from rag.config import Settings
    from rag.store import ChunkStore, corpus_version_of

    data_dir = tmp_path_factory.mktemp("docs") / "data"
    store = ChunkStore.from_settings(Settings(data_dir=data_dir, torch_threads=1), embedder)
    chunks = corpus_chunks()
    store.upsert(chunks, embedder.embed_documents([c.indexed_text for c in chunks]))
    store.set_corpus_version(corpus_version_of(store.all_ids()))
    return data_dir


@pytest.fixture
def docs_rag(docs_data_dir: Path, embedder: Any) -> Any:
    from rag.config import Settings
    from rag.pipeline import RAG

    settings = Settings(
        data_dir=docs_data_dir, torch_threads=1, generator="extractive", retriever="hybrid"
    )
    return RAG(settings, embedder=embedder)


@pytest.fixture
def docs_client(make_client, docs_rag):
    return make_client(rag=docs_rag)


KDE_LINK = f"/documents/{quote(USER_DOC, safe='')}#chunk-{KDE_POSITION}"
KDE_QUESTION = "What is kernel density estimation?"


# --- GET /v1/documents/{doc_id} -----------------------------------------------------------
def test_users_page_as_json_in_position_order(docs_client) -> None:
    response = docs_client.get(f"/v1/documents/{USER_DOC}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("doc_id", "title", "source", "url", "topic")} == {
        "doc_id": USER_DOC,
        "title": "Machine Learning",
        "source": "machine-learning.txt",
        "url": "",
        "topic": "machine-learning",
    }
    assert [(c["position"], c["section"], c["text"]) for c in body["chunks"]] == [
        (i, section, text) for i, (section, text) in enumerate(USER_CHUNKS)
    ]
    assert body["chunks"][2]["chunk_id"] == make_chunk_id(USER_DOC, KDE_TEXT)


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "percent-encoded"])
def test_linked_page_id_with_colons_and_slashes(docs_client, encoded) -> None:
    doc_id = quote(LINKED_DOC, safe="") if encoded else LINKED_DOC
    response = docs_client.get(f"/v1/documents/{doc_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["doc_id"] == LINKED_DOC and body["url"] == LINKED_URL
    assert [c["text"] for c in body["chunks"]] == [text for _, text in LINKED_CHUNKS]


@pytest.mark.parametrize("path", ["/v1/documents/file:nope.txt", "/v1/documents/", "/documents/x"])
def test_unknown_document_is_a_404_json_error(docs_client, path) -> None:
    response = docs_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"


def test_document_routes_need_a_key_when_keys_are_configured(make_client, docs_rag) -> None:
    key = "reader-key"
    client = make_client(rag=docs_rag, api_key_hashes=[hashlib.sha256(key.encode()).hexdigest()])
    for path in (f"/v1/documents/{USER_DOC}", f"/documents/{USER_DOC}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/").status_code == 200  # the chat page shell stays public


# --- GET /documents/{doc_id}: the readable page --------------------------------------------
def test_page_escapes_everything_and_anchors_every_chunk(docs_client) -> None:
    response = docs_client.get(document_path(USER_DOC))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]  # no script at all
    page = response.text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "notebook &amp; trust" in page
    assert "Pitfalls &lt;b&gt;&amp;&lt;/b&gt;" in page  # section headings are escaped too
    for position in range(len(USER_CHUNKS)):
        assert page.count(f'id="chunk-{position}"') == 1
    assert '<link rel="stylesheet" href="/static/style.css">' in page
    assert "<h1>Machine Learning</h1>" in page
    assert "Original page" not in page  # the user's page has no public URL
    assert "http://" not in page.replace(LINKED_URL, "") and "//cdn" not in page


def test_page_links_the_public_url_of_a_linked_page(docs_client) -> None:
    page = docs_client.get(document_path(LINKED_DOC)).text
    assert f'<a href="{LINKED_URL}" rel="noopener noreferrer">Original page</a>' in page
    assert 'id="chunk-0"' in page and 'id="chunk-1"' in page
    assert "Quickstart &gt; Creating models" in page


# --- citations of URL-less chunks link to the page -----------------------------------------
def _kde_citation(citations: list[dict[str, Any]]) -> dict[str, Any]:
    matching = [c for c in citations if c["chunk_id"] == make_chunk_id(USER_DOC, KDE_TEXT)]
    assert matching, citations
    return matching[0]


def test_ask_json_links_the_users_page_and_the_link_opens_the_chunk(docs_client) -> None:
    body = docs_client.post("/v1/ask", json={"question": KDE_QUESTION}).json()
    assert body["abstained"] is False, body
    assert _kde_citation(body["citations"])["url"] == KDE_LINK
    assert all(c["url"] for c in body["citations"])
    path, _, anchor = KDE_LINK.partition("#")
    page = docs_client.get(path)
    assert (
        page.status_code == 200 and f'id="{anchor}"' in page.text and "Kernel density" in page.text
    )


def test_ask_keeps_public_urls_of_linked_pages(docs_client) -> None:
    body = docs_client.post("/v1/ask", json={"question": "What is a random forest?"}).json()
    assert body["citations"], body
    assert any(c["url"] == "https://example.org/random-forest" for c in body["citations"])
    assert not any("/documents/" in c["url"] for c in body["citations"])


def test_ask_sse_answer_event_has_the_link(docs_client) -> None:
    events = parse_sse(
        docs_client.post("/v1/ask", json={"question": KDE_QUESTION, "stream": True}).text
    )
    name, answer = events[-1]
    assert name == "answer", events
    assert _kde_citation(answer["citations"])["url"] == KDE_LINK


@pytest.mark.parametrize("public_url", [None, "https://rag.example.org/"])
def test_chat_completions_sources_use_absolute_links(make_client, docs_rag, public_url) -> None:
    client = make_client(rag=docs_rag, public_url=public_url)
    base = "https://rag.example.org" if public_url else "http://testserver"
    request = {"messages": [{"role": "user", "content": KDE_QUESTION}]}
    body = client.post("/v1/chat/completions", json=request).json()
    citation = _kde_citation(body["citations"])
    assert citation["url"] == base + KDE_LINK
    content = body["choices"][0]["message"]["content"]
    assert f"[{citation['n']}] Machine Learning — {base}{KDE_LINK}" in content

    streamed = client.post("/v1/chat/completions", json={**request, "stream": True}).text
    chunks = [data for _, data in parse_sse(streamed) if isinstance(data, dict)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert f"{base}{KDE_LINK}" in text
    assert _kde_citation(chunks[-1]["citations"])["url"] == base + KDE_LINK


def test_slack_reply_has_an_absolute_link(make_client, docs_rag) -> None:
    from pydantic import SecretStr

    from tests.api.test_slack import SECRET, TOKEN

    slack = FakeSlackAPI()
    try:
        client = make_client(
            rag=docs_rag,
            slack_signing_secret=SecretStr(SECRET),
            slack_bot_token=SecretStr(TOKEN),
            slack_api_url=slack.url,
            public_url="https://rag.example.org",
        )
        assert post_event(client, mention(KDE_QUESTION)).status_code == 200
        reply = slack.wait_posts(1)[0]
    finally:
        slack.server.shutdown()
    assert f"<https://rag.example.org{KDE_LINK}|Machine Learning>" in reply["text"]
    assert f"<https://rag.example.org{KDE_LINK}|" in reply["blocks"][-1]["text"]["text"]


# --- the link helper -------------------------------------------------------------------------
def _answer(citations: list[Citation], hits: list[Hit]) -> Answer:
    return Answer(
        text="x [1].", citations=citations, abstained=False, generator="g", retriever="r", hits=hits
    )


def _cite(n: int, chunk_id: str, url: str = "") -> Citation:
    return Citation(n=n, chunk_id=chunk_id, source="s", title="t", url=url, quote="q")


def test_link_citations_uses_the_hit_position_and_keeps_public_urls() -> None:
    chunk = Chunk(id="file:a b?.txt#abc", doc_id="file:a b?.txt", text="t", position=7)
    answer = _answer(
        [_cite(1, chunk.id), _cite(2, "url:x#1", url="https://x.org/")],
        [Hit(chunk=chunk, score=1.0, rank=1, retriever="r")],
    )
    linked = link_citations(answer, "https://h.example")
    assert linked.citations[0].url == "https://h.example/documents/file%3Aa%20b%3F.txt#chunk-7"
    assert linked.citations[1].url == "https://x.org/"
    assert answer.citations[0].url == ""  # the original answer is not changed


def test_link_citations_without_the_hit_links_the_document_or_nothing() -> None:
    answer = _answer([_cite(1, "file:m.txt#abc"), _cite(2, "no-hash-id")], [])
    urls = [c.url for c in link_citations(answer).citations]
    assert urls == ["/documents/file%3Am.txt", ""]


def test_public_base_url_defaults_to_host_and_port(settings) -> None:
    assert public_base_url(settings) == "http://127.0.0.1:8000"
    assert (
        public_base_url(settings.model_copy(update={"host": "::1", "port": 9})) == "http://[::1]:9"
    )
    assert public_base_url(settings.model_copy(update={"public_url": "https://a.b/rag/"})) == (
        "https://a.b/rag"
    )
