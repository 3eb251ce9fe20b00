"""The Slack bot: slack-bolt over the HTTP Events API, mounted at ``/slack/events``.

* Requests are verified with the signing secret on the raw body bytes (bad or missing
  signature, a malformed or more than five minutes old timestamp, a body that is not UTF-8:
  401) before the body is parsed at all; a signed body that is not a JSON object (or a form
  whose ``payload`` is not one) is 400. Both in the API's ``{"error": {...}}`` shape.
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

import asyncio
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.doc_links import public_base_url
from api.errors import ApiError, error_response, status_code_name
from rag.errors import ConfigError, MlragError
from rag.render import render_slack, slack_escape
from rag.request import AskRequest
from rag.types import Turn

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
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


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


class _TrackingExecutor(ThreadPoolExecutor):
    """A thread pool that knows its unfinished tasks, so shutdown can wait for them with a
    deadline (``shutdown(wait=True)`` has none)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def wait_pending(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for submitted tasks; the number still unfinished."""
        with self._pending_lock:
            pending = list(self._pending)
        _, not_done = wait(pending, timeout=timeout_s)
        return len(not_done)


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


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


def verify_slack_request(verifier: Any, body: bytes, headers: Any) -> str:
    """The body as text when it carries a valid, fresh Slack signature; else 401.

    Runs before any parsing, so unsigned junk never reaches the JSON or form decoders. The
    headers are checked for shape first: slack_sdk's verifier raises on a non-numeric
    timestamp or a non-ASCII signature instead of answering False."""
    timestamp = headers.get("x-slack-request-timestamp") or ""
    signature = headers.get("x-slack-signature") or ""
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _unauthorized("missing or malformed X-Slack-Request-Timestamp")
    if not _SIGNATURE.fullmatch(signature):
        raise _unauthorized("missing or malformed X-Slack-Signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Slack signs UTF-8 text; bytes that are not cannot be verified (or come from Slack).
        raise _unauthorized(
            "the request body is not UTF-8, so its signature cannot be verified"
        ) from None
    if not verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
        raise _unauthorized("invalid or expired Slack signature")
    return text


def check_slack_payload(text: str, content_type: str | None) -> dict[str, Any]:
    """The parsed body of a verified request (as bolt will parse it); 400 unless it is a JSON
    object (a JSON body, or a form's ``payload`` field) or a plain form."""
    from slack_bolt.request.internals import parse_body

    media_type = (content_type or "").split(";")[0].strip().lower() or None
    try:
        payload = parse_body(text, media_type)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ApiError(400, "bad_request", f"the Slack request body is not valid: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_request", "the Slack request body must be a JSON object")
    return payload


def bolt_to_response(bolt_response: BoltResponse) -> Response:
    """An HTTP response for bolt's answer; its error statuses get the API's error shape."""
    status = bolt_response.status
    headers = bolt_response.first_headers_without_set_cookie()
    if status < 400:
        return Response(content=bolt_response.body, status_code=status, headers=headers)
    headers = {
        k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if status >= 500:
        # Verified requests that bolt fails on are malformed events; its listeners' own
        # failures never reach the HTTP response (they run after the ack).
        return error_response(
            400, "bad_request", "the Slack request could not be processed", headers
        )
    messages = {401: "invalid Slack signature", 404: "no handler for this Slack request"}
    message = messages.get(status, f"Slack request refused ({status})")
    return error_response(status, status_code_name(status), message, headers)


class SlackBot:
    """The bolt app and the state it keeps (thread history, handled events)."""

    def __init__(self, services: Services) -> None:
        from slack_bolt import App
        from slack_sdk import WebClient
        from slack_sdk.signature import SignatureVerifier

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
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the route on each request
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
        self.verifier = SignatureVerifier(secret)
        # Our own pool, so shutdown can stop it; it bounds concurrent Slack answers too.
        self._executor = _TrackingExecutor(max_workers=4, thread_name_prefix="mlrag-slack")
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
                # The same service as HTTP answers: validation, generation slot, metrics, links.
                answers = self.services.answers
                valid = answers.validate(AskRequest(question, history=tuple(history)))
                answer = answers.answer_from_thread(valid, self._app_loop(), self.link_base)
                text, blocks = render_slack(answer)
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

    def _app_loop(self) -> asyncio.AbstractEventLoop:
        """The app's event loop (the generation gate lives there), seen by the HTTP route."""
        if self.loop is None:
            raise MlragError("the Slack bot has not received a request yet")
        return self.loop

    # --- HTTP ----------------------------------------------------------------------------
    def dispatch(
        self, body: str, query: str, headers: dict[str, str | Sequence[str]]
    ) -> BoltResponse:
        """Run one verified HTTP request through bolt (ack, listeners); 400 when bolt cannot
        make sense of it."""
        from slack_bolt import BoltRequest

        try:
            return self.app.dispatch(BoltRequest(body=body, query=query, headers=headers))
        except Exception as exc:  # noqa: BLE001 - a malformed event, not a server fault
            log.warning(
                "slack: could not process a signed request: %s: %s", type(exc).__name__, exc
            )
            raise ApiError(400, "bad_request", "the Slack request could not be processed") from None

    def shutdown(self, grace_s: float = 0.0) -> None:
        """Stop taking work, and wait up to ``grace_s`` for acknowledged events still being
        answered (Slack will not resend them: without this, a restart loses their replies)."""
        self._executor.shutdown(wait=False)
        unfinished = self._executor.wait_pending(grace_s) if grace_s > 0 else 0
        if unfinished:
            log.warning("slack: %d answer(s) still running at shutdown", unfinished)


def mount_slack(app: FastAPI, services: Services) -> SlackBot:
    """Create the bot and add ``POST /slack/events`` to ``app``."""
    bot = SlackBot(services)

    @app.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        bot.loop = asyncio.get_running_loop()
        body = await request.body()
        # Signature first, then parsing: unsigned junk is refused before any decoder sees it.
        text = verify_slack_request(bot.verifier, body, request.headers)
        check_slack_payload(text, request.headers.get("content-type"))
        headers: dict[str, str | Sequence[str]] = dict(request.headers.items())
        # bolt's dispatch blocks (signature check, auth.test once, ack): keep it off the loop.
        bolt_response = await run_in_threadpool(bot.dispatch, text, request.url.query, headers)
        return bolt_to_response(bolt_response)

    return bot
