"""The Slack bot: slack-bolt over the HTTP Events API, mounted at ``/slack/events``.

* Requests are verified with the signing secret (bad or missing signature, or a timestamp
  older than five minutes: 401) before anything else runs.
* Start-up makes no call to Slack (``token_verification_enabled=False``); the first event
  triggers bolt's ``auth.test`` to learn the bot's own user id.
* Events are acknowledged at once and answered afterwards by lazy listeners in bolt's
  worker threads (Slack wants a response within 3 s).
* Answers ``app_mention``s, direct messages and the ``/askml`` command with exactly one
  threaded reply: the answer and a sources block (title, link, quote), or an explicit
  "not covered" without sources.
* Its own and other bots' messages are ignored; Slack's retries of an event already handled
  (same ``event_id``, sent with ``X-Slack-Retry-Num``) are acknowledged and dropped.
* Follow-ups in a thread use that thread's earlier turns, kept in a bounded in-memory map
  (the last ``MAX_THREAD_TURNS`` turns of the ``MAX_THREADS`` most recent threads). This
  needs no extra Slack scopes or API calls, but is per process and lost on restart: a
  restarted or second replica answers follow-ups without the earlier context.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.doc_links import link_citations, public_base_url
from rag.errors import ConfigError, MlragError
from rag.types import Answer, Turn

if TYPE_CHECKING:
    from slack_bolt import App, BoltResponse
    from slack_sdk import WebClient

    from api.deps import Services

log = logging.getLogger(__name__)

MAX_THREADS = 1000
MAX_THREAD_TURNS = 10
MAX_SEEN_EVENTS = 10_000
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
# Message subtypes that are not a person writing to the bot.
_IGNORED_SUBTYPES = {
    "bot_message",
    "message_changed",
    "message_deleted",
    "message_replied",
    "channel_join",
    "channel_leave",
}
_SECTION_LIMIT = 2900  # Slack caps a section's text at 3000 characters


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def strip_mentions(text: str) -> str:
    """The message text without ``<@U123>`` mentions."""
    return _MENTION.sub("", text).strip()


class ThreadHistory:
    """Recent turns per Slack thread, bounded in threads and turns (thread-safe)."""

    def __init__(self, max_threads: int = MAX_THREADS, max_turns: int = MAX_THREAD_TURNS) -> None:
        self._threads: OrderedDict[tuple[str, str], list[Turn]] = OrderedDict()
        self._max_threads = max_threads
        self._max_turns = max_turns
        self._lock = threading.Lock()

    def get(self, channel: str, thread_ts: str) -> list[Turn]:
        """The thread's turns, oldest first."""
        with self._lock:
            return list(self._threads.get((channel, thread_ts), []))

    def add(self, channel: str, thread_ts: str, question: str, answer: str) -> None:
        """Record one question and its answer."""
        with self._lock:
            turns = self._threads.setdefault((channel, thread_ts), [])
            self._threads.move_to_end((channel, thread_ts))
            turns.extend([Turn("user", question), Turn("assistant", answer)])
            del turns[: max(0, len(turns) - self._max_turns)]
            while len(self._threads) > self._max_threads:
                self._threads.popitem(last=False)


class SeenEvents:
    """Event ids already handled (bounded), so Slack's retries are not answered twice."""

    def __init__(self, max_events: int = MAX_SEEN_EVENTS) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max = max_events
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen, False afterwards."""
        with self._lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = None
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True


def format_reply(answer: Answer) -> tuple[str, list[dict[str, Any]]]:
    """(top-level text, blocks) of a reply: the answer and its sources, or the abstention."""
    if answer.abstained:
        text = (
            f"I could not find this in the documents, so I won't guess. {slack_escape(answer.text)}"
        )
        return text, [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_LIMIT]}}
        ]
    body = slack_escape(answer.text)
    source_lines = []
    for c in answer.citations:
        title = slack_escape(c.title or c.source or c.url)
        link = f"<{c.url}|{title}>" if c.url else title
        line = f"[{c.n}] {link}"
        if c.quote:
            line += f"\n> {slack_escape(c.quote)}"
        source_lines.append(line)
    sources = "*Sources*\n" + "\n".join(source_lines) if source_lines else ""
    text = body + (f"\n\n{sources}" if sources else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:_SECTION_LIMIT]}}
    ]
    if sources:
        blocks.append({"type": "divider"})
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": sources[:_SECTION_LIMIT]}}
        )
    return text, blocks


class SlackBot:
    """The bolt app and the state it keeps (thread history, handled events)."""

    def __init__(self, services: Services) -> None:
        from slack_bolt import App
        from slack_sdk import WebClient

        settings = services.settings
        secret = (
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else ""
        )
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
        if not secret:
            raise ConfigError("MLRAG_SLACK_SIGNING_SECRET is required for the Slack bot")
        if not token:
            raise ConfigError(
                "MLRAG_SLACK_BOT_TOKEN is required when MLRAG_SLACK_SIGNING_SECRET is set"
            )
        self.services = services
        self.history = ThreadHistory()
        self.seen = SeenEvents()
        # Slack shows links outside this service: URL-less citations need absolute links.
        self.link_base = public_base_url(settings)
        if not settings.public_url:
            log.warning(
                "slack: MLRAG_PUBLIC_URL is not set; document links in replies use %s",
                self.link_base,
            )
        base_url = (
            settings.slack_api_url
            if settings.slack_api_url.endswith("/")
            else settings.slack_api_url + "/"
        )
        self.client: WebClient = WebClient(token=token, base_url=base_url, timeout=10)
        # Our own pool, so shutdown can stop it; it bounds concurrent Slack answers too.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlrag-slack")
        self.app: App = App(
            listener_executor=self._executor,
            signing_secret=secret,
            client=self.client,
            token_verification_enabled=False,  # no network call at start-up
            process_before_response=False,
            logger=logging.getLogger("api.slack.bolt"),
            name="mlrag",
        )
        self._register()

    # --- wiring --------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        app.middleware(self._drop_duplicates)
        app.event("app_mention")(ack=self._ack, lazy=[self._on_mention])
        app.event("message")(ack=self._ack, lazy=[self._on_message])
        app.command("/askml")(ack=self._ack_command, lazy=[self._on_command])

    def _drop_duplicates(self, body: dict[str, Any], next: Any) -> Any:  # noqa: A002 - bolt's name
        from slack_bolt import BoltResponse

        event_id = body.get("event_id")
        if isinstance(event_id, str) and not self.seen.first_time(event_id):
            log.info("slack: dropping repeated delivery of %s", event_id)
            return BoltResponse(status=200, body="")
        return next()

    @staticmethod
    def _ack(ack: Any) -> None:
        ack()

    @staticmethod
    def _ack_command(ack: Any, command: dict[str, Any]) -> None:
        if not (command.get("text") or "").strip():
            ack("Ask me a machine-learning question, e.g. `/askml what is dropout?`")
            return
        ack()

    # --- listeners (run in bolt's worker threads) ----------------------------------------
    def _on_mention(self, event: dict[str, Any]) -> None:
        if self._from_a_bot(event):
            return
        self._answer(
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
            question=strip_mentions(event.get("text", "")),
        )

    def _on_message(self, event: dict[str, Any]) -> None:
        # Only direct messages; channel messages reach the bot as app_mention events.
        if event.get("channel_type") != "im" or self._from_a_bot(event) or event.get("subtype"):
            return
        self._answer(
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
            question=strip_mentions(event.get("text", "")),
        )

    def _on_command(self, command: dict[str, Any]) -> None:
        question = (command.get("text") or "").strip()
        if not question:
            return
        channel = command["channel_id"]
        # A slash command has no message to reply to: post the question, answer in its thread.
        user = command.get("user_id")
        opener = (
            f"<@{user}> asked: {slack_escape(question)}"
            if user
            else f"Question: {slack_escape(question)}"
        )
        try:
            posted = self.client.chat_postMessage(channel=channel, text=opener)
        except Exception:  # noqa: BLE001 - Slack errors are logged, there is nobody else to tell
            log.exception("slack: could not post the /askml question")
            return
        self._answer(channel=channel, thread_ts=str(posted["ts"]), question=question)

    @staticmethod
    def _from_a_bot(event: dict[str, Any]) -> bool:
        return (
            bool(event.get("bot_id") or event.get("bot_profile"))
            or event.get("subtype") in _IGNORED_SUBTYPES
        )

    def _answer(self, *, channel: str, thread_ts: str, question: str) -> None:
        """Answer ``question`` and post exactly one reply in the thread."""
        if not question:
            text = "Ask me a machine-learning question and I will answer from the documents."
            blocks: list[dict[str, Any]] = []
            answer_text = None
        else:
            history = self.history.get(channel, thread_ts)
            try:
                rag = self.services.require_rag()
                answer = link_citations(rag.ask(question, history=history or None), self.link_base)
                text, blocks = format_reply(answer)
                answer_text = answer.text
            except MlragError as exc:
                log.warning("slack: answer failed: %s: %s", exc.code, exc)
                text, blocks, answer_text = (
                    f"Sorry, I could not answer that ({exc.code}).",
                    [],
                    None,
                )
            except Exception:  # noqa: BLE001 - the user still gets one reply
                log.exception("slack: answer failed")
                text, blocks, answer_text = "Sorry, something went wrong while answering.", [], None
        try:
            self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=text, blocks=blocks or None
            )
        except Exception:  # noqa: BLE001 - nothing else to do than log it
            log.exception("slack: could not post the reply")
            return
        if answer_text is not None:
            self.history.add(channel, thread_ts, question, answer_text)

    # --- HTTP ----------------------------------------------------------------------------
    def dispatch(self, body: bytes, query: str, headers: dict[str, str]) -> BoltResponse:
        """Run one HTTP request through bolt (verification, ack, listeners)."""
        from slack_bolt import BoltRequest

        return self.app.dispatch(
            BoltRequest(body=body.decode("utf-8"), query=query, headers=headers)
        )

    def shutdown(self) -> None:
        """Stop bolt's worker threads (running answers finish)."""
        self._executor.shutdown(wait=False)


def mount_slack(app: FastAPI, services: Services) -> SlackBot:
    """Create the bot and add ``POST /slack/events`` to ``app``."""
    bot = SlackBot(services)

    @app.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items()}
        # bolt's dispatch blocks (signature check, auth.test once, ack): keep it off the loop.
        bolt_response = await run_in_threadpool(bot.dispatch, body, request.url.query, headers)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers=bolt_response.first_headers_without_set_cookie(),
        )

    return bot
