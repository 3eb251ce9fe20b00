"""The chat page in headless Chromium against a real uvicorn over the tiny corpus: ask, watch
the answer stream in, open a citation, ask a follow-up (with history), rate an answer, see an
abstention, and check the layout on a phone-sized screen. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(tiny_settings, real_rag):
    """A real uvicorn serving the app on 127.0.0.1 in a background thread."""
    import uvicorn

    from api.app import create_app

    port = _free_port()
    settings = tiny_settings.model_copy(update={"data_dir": tiny_settings.data_dir})
    app = create_app(settings, rag=real_rag)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (scripts/install-test-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()


# Records every text assigned to an answer box, so the test sees each streamed update (a
# MutationObserver would only see the batched end state).
_RECORD_ANSWER_TEXTS = """
(() => {
  const desc = Object.getOwnPropertyDescriptor(Node.prototype, "textContent");
  window.__answerTexts = [];
  Object.defineProperty(Node.prototype, "textContent", {
    configurable: true,
    get() { return desc.get.call(this); },
    set(value) {
      if (this.classList && this.classList.contains("answer")) window.__answerTexts.push(String(value));
      desc.set.call(this, value);
    },
  });
})();
"""


def test_chat_page_end_to_end(live_server, browser) -> None:
    base, app = live_server
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    # Citation targets are external sites; answer them locally (the test has no internet).
    context.route(
        "https://example.org/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<h1>source page</h1>"
        ),
    )
    context.add_init_script(_RECORD_ANSWER_TEXTS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    external: list[str] = []
    page.on(
        "request", lambda req: external.append(req.url) if not req.url.startswith(base) else None
    )
    page.goto(base + "/")

    # The question box is the page's first text field, and the selects are filled from /v1/config.
    first_field = page.locator(
        "textarea, input[type=text], input:not([type]), input[type=search]"
    ).first
    assert first_field.get_attribute("id") == "question"
    page.wait_for_function("document.querySelectorAll('#retriever option').length > 0")
    assert "hybrid" in page.locator("#retriever option").all_inner_texts()
    page.select_option("#generator", "extractive")
    page.select_option("#retriever", "hybrid")
    assert page.get_by_label("Your question").count() == 1

    # Ask: Enter sends (Shift+Enter would only add a newline).
    question = page.locator("#question")
    question.fill("What is overfitting?")
    question.press("Shift+Enter")
    assert page.locator("#conversation .turn").count() == 0
    question.fill("What is overfitting?")
    with page.expect_response(lambda r: r.url.endswith("/v1/ask")) as ask_info:
        question.press("Enter")
    assert ask_info.value.headers["content-type"].startswith("text/event-stream")
    turn = page.locator("#conversation .turn").first
    turn.locator(".sources a.source-link").first.wait_for(timeout=30_000)
    texts = [t for t in page.evaluate("window.__answerTexts") if t]
    assert len(texts) >= 2, f"the answer should appear piece by piece: {texts}"
    assert len(texts[0]) < len(texts[-1]) and texts[-1].startswith(texts[0]), texts
    assert "noise in the training data" in turn.locator(".answer").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)

    # Citations are real links with title, URL and the quoted sentence.
    link = turn.locator(".sources a.source-link").first
    href = link.get_attribute("href")
    assert href == "https://example.org/overfitting"
    assert link.inner_text() == "Overfitting"
    assert turn.locator(".sources blockquote").first.inner_text().strip()
    with context.expect_page() as popup_info:
        link.click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url == href
    popup.close()

    # Thumbs up is stored.
    with page.expect_response(lambda r: r.url.endswith("/v1/feedback")) as feedback_info:
        turn.locator("button[data-rating=up]").click()
    assert feedback_info.value.status == 201
    assert app.state.services.feedback.read()[-1]["rating"] == "up"

    # A follow-up sends the conversation so far.
    with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as follow_info:
        question.fill("How can it be reduced?")
        question.press("Enter")
    history = follow_info.value.post_data_json["history"]
    assert [h["role"] for h in history] == ["user", "assistant"] and history[0][
        "content"
    ] == "What is overfitting?"
    second = page.locator("#conversation .turn").nth(1)
    second.locator(".feedback").wait_for(timeout=30_000)
    assert second.locator(".sources a.source-link").count() >= 1, second.inner_html()

    # An off-topic question is shown as an abstention without sources.
    question.fill("Which wine goes with grilled salmon?")
    question.press("Enter")
    third = page.locator("#conversation .turn").nth(2)
    third.locator(".abstained-note").wait_for(state="visible", timeout=30_000)
    assert third.locator(".sources").is_hidden()
    assert third.locator(".sources a").count() == 0
    page.screenshot(path=str(ARTIFACTS / "chat-conversation.png"), full_page=True)

    # Readable on a phone: no horizontal scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / "chat-phone.png"), full_page=True)

    assert not errors, errors
    assert not [u for u in external if not u.startswith("https://example.org/")], external
    context.close()
