"""Thumbs up/down feedback: append-only JSONL, admin read-back."""

from __future__ import annotations

import json
import threading

from api.auth import hash_key

ADMIN = "admin-secret-key"


def test_feedback_is_appended_and_readable_by_admins(make_client, settings) -> None:
    client = make_client(admin_key_hashes=[hash_key(ADMIN)])
    body = {
        "rating": "up",
        "question": "What is overfitting?",
        "answer": "Noise [1].",
        "citations": ["https://example.org/overfitting"],
    }
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 201 and response.json()["status"] == "stored"
    client.post("/v1/feedback", json={**body, "rating": "down", "comment": "too short"})
    lines = (settings.data_dir / "feedback.jsonl").read_text().splitlines()
    assert [json.loads(line)["rating"] for line in lines] == ["up", "down"]

    assert client.get("/v1/feedback").status_code == 401
    items = client.get("/v1/feedback", headers={"Authorization": f"Bearer {ADMIN}"}).json()["items"]
    assert [i["rating"] for i in items] == ["up", "down"] and items[1]["comment"] == "too short"


def test_feedback_validation(client) -> None:
    assert client.post("/v1/feedback", json={"rating": "meh", "question": "q"}).status_code == 422
    assert client.post("/v1/feedback", json={"rating": "up"}).status_code == 422


def test_concurrent_feedback_lines_never_interleave(make_client, settings) -> None:
    from api.feedback import FeedbackStore

    store = FeedbackStore(settings.data_dir / "feedback.jsonl")
    threads = [
        threading.Thread(
            target=lambda i=i: [
                store.append({"rating": "up", "question": f"q{i}-{j}" * 200}) for j in range(20)
            ]
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [
        json.loads(line) for line in (settings.data_dir / "feedback.jsonl").read_text().splitlines()
    ]
    assert len(records) == 80
