"""POST /v1/ingest (admin, background job), GET /v1/ingest/{id}, GET /v1/sources, and the
rules for untrusted sources: paths only inside ingest_roots, URLs only to public hosts
unless private ones are allowed."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from api.auth import hash_key

ADMIN = "ingest-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

DOC = """# Support vector machines

A support vector machine finds the hyperplane that separates two classes with the largest
margin. The training points closest to the hyperplane are called support vectors.
"""


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "svm.md").write_text(DOC)
    (root / "sub").mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    os.symlink(outside, root / "link-out.txt")
    return {"root": root, "outside": outside}


@pytest.fixture
def admin_client(make_client, roots, settings, embedder):
    from rag.pipeline import RAG

    def build(**overrides):
        return make_client(
            rag=RAG(settings, embedder=embedder),
            admin_key_hashes=[hash_key(ADMIN)],
            ingest_roots=[roots["root"]],
            fetch_delay_s=0.0,
            **overrides,
        )

    return build


def _wait_job(client, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/ingest/{job_id}", headers=AUTH).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"ingest job {job_id} did not finish")


def test_ingest_a_file_inside_the_root_then_search_it(admin_client) -> None:
    client = admin_client()
    response = client.post(
        "/v1/ingest",
        json={"sources": [{"kind": "path", "location": "svm.md", "topic": "ml"}]},
        headers=AUTH,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running", "succeeded")
    done = _wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["summary"]["chunks_added"] >= 1 and done["summary"]["failed"] == []
    assert done["progress"], "progress events are recorded"

    documents = client.get("/v1/sources").json()["documents"]
    assert len(documents) == 1 and documents[0]["chunks"] >= 1 and documents[0]["topic"] == "ml"
    assert client.get("/ready").status_code == 200
    search = client.post(
        "/v1/search", json={"query": "largest margin hyperplane", "retriever": "hybrid"}
    )
    assert search.status_code == 200, search.text
    hits = search.json()["hits"]
    assert "support vector" in hits[0]["text"]
    assert [j["id"] for j in client.get("/v1/ingest", headers=AUTH).json()] == [job["id"]]


@pytest.mark.parametrize(
    "location",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "link-out.txt",
        "/etc/passwd",
        "missing.md",
        "sub",
        "~/x",
    ],
)
def test_paths_outside_the_roots_are_refused(admin_client, roots, location) -> None:
    client = admin_client()
    response = client.post(
        "/v1/ingest", json={"sources": [{"kind": "path", "location": location}]}, headers=AUTH
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert client.get("/v1/ingest", headers=AUTH).json() == [], "no job may start"


def test_absolute_outside_path_is_refused(admin_client, roots) -> None:
    client = admin_client()
    response = client.post(
        "/v1/ingest",
        json={"sources": [{"kind": "path", "location": str(roots["outside"])}]},
        headers=AUTH,
    )
    assert response.status_code == 400


def test_no_local_paths_without_roots(make_client) -> None:
    client = make_client(admin_key_hashes=[hash_key(ADMIN)])
    response = client.post(
        "/v1/ingest", json={"sources": [{"kind": "path", "location": "/etc/hosts"}]}, headers=AUTH
    )
    assert response.status_code == 400 and "ingest_roots" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "http://localhost/x",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "file:///etc/passwd",
        "ftp://example.org/x",
    ],
)
def test_private_and_non_http_urls_are_refused(make_client, url) -> None:
    client = make_client(admin_key_hashes=[hash_key(ADMIN)])
    response = client.post(
        "/v1/ingest", json={"sources": [{"kind": "url", "location": url}]}, headers=AUTH
    )
    assert response.status_code == 400, response.text


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/kmeans.html":
            body = (
                b"<html><head><title>k-means</title></head><body><h1>k-means clustering</h1>"
                b"<p>k-means partitions observations into k clusters, assigning each point to the cluster "
                b"with the nearest centroid and then recomputing the centroids.</p></body></html>"
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.server
def test_loopback_url_ingest_when_private_urls_are_allowed(admin_client) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/kmeans.html"
        refused = admin_client().post(
            "/v1/ingest", json={"sources": [{"kind": "url", "location": url}]}, headers=AUTH
        )
        assert refused.status_code == 400
        client = admin_client(allow_private_urls=True)
        job = client.post(
            "/v1/ingest",
            json={"sources": [{"kind": "url", "location": url, "topic": "ml"}]},
            headers=AUTH,
        ).json()
        done = _wait_job(client, job["id"])
        assert done["status"] == "succeeded" and done["summary"]["failed"] == [], done
        docs = client.get("/v1/sources").json()["documents"]
        assert any(d["url"].endswith("/kmeans.html") for d in docs), docs
    finally:
        server.shutdown()


def test_unknown_job_is_404(admin_client) -> None:
    response = admin_client().get("/v1/ingest/nope", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_bad_ingest_bodies(admin_client) -> None:
    client = admin_client()
    assert client.post("/v1/ingest", json={"sources": []}, headers=AUTH).status_code == 422
    assert (
        client.post(
            "/v1/ingest", json={"sources": [{"kind": "ftp", "location": "x"}]}, headers=AUTH
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/v1/ingest",
            json={"sources": [{"kind": "url", "location": "http://x", "depth": 9}]},
            headers=AUTH,
        ).status_code
        == 422
    )


def test_refusals_do_not_reveal_which_outside_files_exist(roots) -> None:
    from api.ingest_safety import resolve_ingest_path
    from rag.errors import InvalidInputError

    messages = []
    for location in (
        str(roots["outside"]),
        str(roots["outside"]) + ".missing",
        "../secret.txt",
        "../nothing.txt",
    ):
        with pytest.raises(InvalidInputError) as err:
            resolve_ingest_path(location, [roots["root"]])
        messages.append(str(err.value).replace(location, "X"))
    assert len(set(messages)) == 1, messages
    assert resolve_ingest_path("sub/../svm.md", [roots["root"]]) == (
        roots["root"].resolve() / "svm.md",
        roots["root"].resolve(),
    )
