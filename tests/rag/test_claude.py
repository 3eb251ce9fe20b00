"""The Claude generator, run through the real anthropic SDK against a recorded in-process
transport: what it sends (headers, system block, search results, history) and how it reads
real-shaped JSON and SSE answers, retries and failures."""

from __future__ import annotations

import anthropic
import httpx2
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION

from rag.abstention import ABSTAIN_TEXT
from rag.config import Settings
from rag.errors import (
    GenerationError,
    InvalidInputError,
    ModelUnavailableError,
    UpstreamUnavailableError,
)
from rag.generation.base import Generator
from rag.generation.claude import ClaudeGenerator
from rag.prompt import SYSTEM_PROMPT
from rag.types import AnswerEvent, Chunk, Hit, TokenEvent, Turn
from tests.rag.anthropic_fakes import (
    API_KEY,
    RecordingTransport,
    error_event,
    error_response,
    json_response,
    make_client,
    message_body,
    message_stream_events,
    search_result_citation,
    sse_response,
    text_block,
)

QUESTION = "How does gradient descent train a model?"
GD_TEXT = (
    "Gradient descent minimises the loss by repeatedly stepping against the gradient. "
    "The step size is the learning rate."
)
LR_TEXT = "A learning rate that is too large makes training diverge."
BAG_TEXT = "Bagging trains each model on a bootstrap sample and averages them."


def _hit(rank: int, text: str, *, title: str, section: str, url: str, source: str) -> Hit:
    chunk = Chunk(
        id=f"doc{rank}#c{rank}",
        doc_id=f"doc{rank}",
        text=text,
        section=section,
        position=0,
        metadata={"title": title, "url": url, "source": source},
    )
    return Hit(chunk=chunk, score=1.0 / rank, rank=rank, retriever="hybrid")


@pytest.fixture
def hits() -> list[Hit]:
    return [
        _hit(
            1,
            GD_TEXT,
            title="Gradient descent",
            section="Method",
            url="https://ml.test/gd",
            source="linked/gd.html",
        ),
        _hit(
            2,
            LR_TEXT,
            title="Learning rate",
            section="",
            url="",
            source="corpus/machine-learning.txt",
        ),
        _hit(
            3,
            BAG_TEXT,
            title="Bagging",
            section="Ensembles > Bagging",
            url="https://ml.test/bag",
            source="linked/bag.html",
        ),
    ]


@pytest.fixture
def claude_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"claude_model": "claude-test-model", "claude_max_tokens": 321}
    )


def _generator(
    settings: Settings, replies: list, max_retries: int = 2
) -> tuple[ClaudeGenerator, RecordingTransport]:
    transport = RecordingTransport(replies)
    client = make_client(transport, max_retries=max_retries)
    return ClaudeGenerator(settings, client=client), transport


def _cited_body(**kwargs) -> dict:
    """An answer citing search results 0 and 1 the way the API splits cited text blocks."""
    return message_body(
        [
            text_block("Gradient descent "),
            text_block(
                "minimises the loss by stepping against the gradient",
                [
                    search_result_citation(
                        0,
                        GD_TEXT.split(". ")[0] + ".",
                        source="https://ml.test/gd",
                        title="Gradient descent — Method",
                    )
                ],
            ),
            text_block(". "),
            text_block(
                "Too large a learning rate makes it diverge",
                [
                    search_result_citation(
                        1, LR_TEXT, source="corpus/machine-learning.txt", title="Learning rate"
                    ),
                    search_result_citation(
                        0, "The step size is the learning rate.", source="https://ml.test/gd"
                    ),
                ],
            ),
            text_block("."),
        ],
        **kwargs,
    )


CITED_TEXT = (
    "Gradient descent minimises the loss by stepping against the gradient [1]. "
    "Too large a learning rate makes it diverge [2][1]."
)


# --- the request ------------------------------------------------------------------------


def test_generate_sends_search_results_cached_system_prompt_and_history(claude_settings, hits):
    gen, transport = _generator(claude_settings, [json_response(_cited_body())])
    history = [
        Turn("user", "What is a loss function?"),
        Turn("assistant", "It scores predictions."),
    ]

    gen.generate(QUESTION, hits, history=history)

    assert len(transport.requests) == 1
    req = transport.last
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.api_key == API_KEY
    # anthropic 2.x sends the key as a bearer token (1.x used x-api-key).
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert req.headers["anthropic-version"] == ANTHROPIC_API_VERSION
    assert "anthropic-beta" not in req.headers  # search results and caching are GA
    body = req.body
    assert body["model"] == "claude-test-model"
    assert body["max_tokens"] == 321
    assert not body.get("stream")
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]

    messages = body["messages"]
    assert messages[:2] == [
        {"role": "user", "content": "What is a loss function?"},
        {"role": "assistant", "content": "It scores predictions."},
    ]
    last = messages[2]
    assert last["role"] == "user"
    *results, question = last["content"]
    assert results == [
        {
            "type": "search_result",
            "source": "https://ml.test/gd",
            "title": "Gradient descent — Method",
            "content": [{"type": "text", "text": GD_TEXT}],
            "citations": {"enabled": True},
        },
        {
            "type": "search_result",
            "source": "corpus/machine-learning.txt",  # no URL: the source path
            "title": "Learning rate",
            "content": [{"type": "text", "text": LR_TEXT}],
            "citations": {"enabled": True},
        },
        {
            "type": "search_result",
            "source": "https://ml.test/bag",
            "title": "Bagging — Ensembles > Bagging",
            "content": [{"type": "text", "text": BAG_TEXT}],
            "citations": {"enabled": True},
        },
    ]
    assert question["type"] == "text"
    assert QUESTION in question["text"]
    assert "<context>" not in question["text"]  # the context travels as search results only


def test_without_hits_the_shared_text_prompt_is_sent(claude_settings):
    gen, transport = _generator(claude_settings, [json_response(message_body(ABSTAIN_TEXT))])

    answer = gen.generate(QUESTION, [])

    content = transport.last.body["messages"][-1]["content"]
    assert isinstance(content, str) and "<context>" in content and QUESTION in content
    assert answer.abstained and answer.citations == []


def test_empty_chunks_are_skipped_and_citation_indexes_still_map_to_their_hit(
    claude_settings, hits
):
    blank = _hit(9, "   ", title="Empty", section="", url="", source="x")
    with_blank = [hits[0], blank, hits[1]]  # LR_TEXT is context block 3 but search result 1
    body = message_body(
        [text_block("It can diverge", [search_result_citation(1, LR_TEXT)]), text_block(".")]
    )
    gen, transport = _generator(claude_settings, [json_response(body)])

    answer = gen.generate(QUESTION, with_blank)

    sent = [
        b for b in transport.last.body["messages"][-1]["content"] if b["type"] == "search_result"
    ]
    assert [b["content"][0]["text"] for b in sent] == [GD_TEXT, LR_TEXT]
    assert answer.text == "It can diverge [3]."
    assert [(c.n, c.chunk_id) for c in answer.citations] == [(3, hits[1].chunk.id)]


# --- reading answers --------------------------------------------------------------------


def test_generate_maps_native_citations_to_markers_and_citations(claude_settings, hits):
    gen, _ = _generator(claude_settings, [json_response(_cited_body())])

    answer = gen.generate(QUESTION, hits)

    assert answer.text == CITED_TEXT
    assert not answer.abstained
    assert [(c.n, c.chunk_id, c.url, c.title, c.section) for c in answer.citations] == [
        (1, "doc1#c1", "https://ml.test/gd", "Gradient descent", "Method"),
        (2, "doc2#c2", "", "Learning rate", ""),
    ]
    # The first citation of a block wins the quote: the API's cited_text, verbatim.
    assert answer.citations[0].quote == GD_TEXT.split(". ")[0] + "."
    assert answer.citations[1].quote == LR_TEXT
    assert answer.citations[1].source == "corpus/machine-learning.txt"
    assert (answer.generator, answer.retriever, answer.question) == ("claude", "hybrid", QUESTION)
    assert answer.hits == hits
    assert answer.timings_ms["generate"] >= 0


def test_markers_the_model_wrote_are_kept_and_not_duplicated(claude_settings, hits):
    body = message_body(
        [
            text_block(
                "Bagging averages bootstrap models [3].", [search_result_citation(2, BAG_TEXT)]
            ),
            text_block(" Large steps diverge [2]."),
        ]
    )
    gen, _ = _generator(claude_settings, [json_response(body)])

    answer = gen.generate(QUESTION, hits)

    assert answer.text == "Bagging averages bootstrap models [3]. Large steps diverge [2]."
    assert [c.n for c in answer.citations] == [3]  # only native citations become Citations


def test_citation_index_beyond_the_sent_results_is_ignored(claude_settings, hits):
    body = message_body(
        [text_block("Claim", [search_result_citation(7, "nowhere")]), text_block(".")]
    )
    gen, _ = _generator(claude_settings, [json_response(body)])

    answer = gen.generate(QUESTION, hits)

    assert answer.text == "Claim." and answer.citations == []


def test_abstention_sets_abstained_and_drops_citations(claude_settings, hits):
    body = message_body([text_block(ABSTAIN_TEXT, [search_result_citation(0, GD_TEXT)])])
    gen, _ = _generator(claude_settings, [json_response(body)])

    answer = gen.generate(QUESTION, hits)

    assert answer.abstained
    assert answer.text == ABSTAIN_TEXT
    assert answer.citations == []


def test_max_tokens_is_an_error_not_a_partial_answer(claude_settings, hits):
    gen, _ = _generator(claude_settings, [json_response(_cited_body(stop_reason="max_tokens"))])

    with pytest.raises(GenerationError, match="max_tokens=321") as info:
        gen.generate(QUESTION, hits)
    assert not isinstance(info.value, UpstreamUnavailableError)


# --- streaming --------------------------------------------------------------------------


def test_stream_sends_stream_true_and_yields_tokens_then_one_answer(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [sse_response(message_stream_events(_cited_body(), delta_chars=9))]
    )

    events = list(gen.stream(QUESTION, hits))

    body = transport.last.body
    assert body["stream"] is True
    assert body["model"] == "claude-test-model" and body["max_tokens"] == 321
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert [b["type"] for b in body["messages"][-1]["content"]] == ["search_result"] * 3 + ["text"]

    tokens = [e for e in events[:-1]]
    assert all(isinstance(e, TokenEvent) for e in tokens) and len(tokens) > 5
    assert isinstance(events[-1], AnswerEvent)
    answer = events[-1].answer
    assert answer.text == CITED_TEXT
    # What the user saw streaming is exactly the final text, markers included.
    assert "".join(t.text for t in tokens).strip() == CITED_TEXT
    assert [(c.n, c.chunk_id, c.quote) for c in answer.citations] == [
        (1, "doc1#c1", GD_TEXT.split(". ")[0] + "."),
        (2, "doc2#c2", LR_TEXT),
    ]


def test_stream_abstention(claude_settings, hits):
    gen, _ = _generator(
        claude_settings, [sse_response(message_stream_events(message_body(ABSTAIN_TEXT)))]
    )

    events = list(gen.stream(QUESTION, hits))

    assert events[-1].answer.abstained and events[-1].answer.citations == []
    assert "".join(e.text for e in events[:-1]) == ABSTAIN_TEXT


def test_stream_error_event_mid_answer_raises_without_an_answer_event(claude_settings, hits):
    events = message_stream_events(_cited_body())
    broken = [*events[:6], error_event("overloaded_error", "Overloaded")]
    gen, transport = _generator(claude_settings, [sse_response(broken)])

    seen = []
    with pytest.raises(GenerationError, match="overloaded_error: Overloaded") as info:
        for event in gen.stream(QUESTION, hits):
            seen.append(event)

    assert isinstance(info.value, UpstreamUnavailableError)  # busy, not a bad request
    assert seen and all(isinstance(e, TokenEvent) for e in seen)
    assert len(transport.requests) == 1  # a started stream is not silently re-sent


def test_stream_connection_drop_raises_without_an_answer_event(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [sse_response(message_stream_events(_cited_body()), fail_after=7)]
    )

    seen = []
    with pytest.raises(UpstreamUnavailableError, match="dropped mid-answer"):
        for event in gen.stream(QUESTION, hits):
            seen.append(event)

    assert seen and not any(isinstance(e, AnswerEvent) for e in seen)
    assert len(transport.requests) == 1  # never re-sent: the streamed text would repeat


def test_stream_read_timeout_mid_answer(claude_settings, hits):
    response = sse_response(
        message_stream_events(_cited_body()),
        fail_after=5,
        fail_with=httpx2.ReadTimeout("read timed out"),
    )
    gen, transport = _generator(claude_settings, [response])

    with pytest.raises(UpstreamUnavailableError, match="timed out mid-answer"):
        list(gen.stream(QUESTION, hits))
    assert len(transport.requests) == 1


def test_stream_that_ends_before_message_stop_is_incomplete(claude_settings, hits):
    events = message_stream_events(_cited_body())
    gen, _ = _generator(claude_settings, [sse_response(events[:-2])])  # no message_delta/stop

    seen = []
    with pytest.raises(GenerationError, match="before message_stop"):
        for event in gen.stream(QUESTION, hits):
            seen.append(event)
    assert not any(isinstance(e, AnswerEvent) for e in seen)


def test_stream_max_tokens_raises_after_tokens(claude_settings, hits):
    events = message_stream_events(_cited_body(stop_reason="max_tokens"))
    gen, _ = _generator(claude_settings, [sse_response(events)])

    seen = []
    with pytest.raises(GenerationError, match="cut off"):
        for event in gen.stream(QUESTION, hits):
            seen.append(event)
    assert seen and not any(isinstance(e, AnswerEvent) for e in seen)


# --- retries and HTTP errors --------------------------------------------------------------


def test_429_then_200_succeeds_after_one_retry(claude_settings, hits):
    gen, transport = _generator(
        claude_settings,
        [
            error_response(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."
            ),
            json_response(_cited_body()),
        ],
    )

    answer = gen.generate(QUESTION, hits)

    assert answer.text == CITED_TEXT
    assert len(transport.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in transport.requests] == ["0", "1"]
    assert transport.requests[0].body == transport.requests[1].body
    assert gen.client.retry_waits == [pytest.approx(0.001)]  # honoured retry-after-ms: 1


def test_stream_retries_before_the_stream_starts(claude_settings, hits):
    gen, transport = _generator(
        claude_settings,
        [
            error_response(500, "api_error", "Internal server error"),
            sse_response(message_stream_events(_cited_body())),
        ],
    )

    events = list(gen.stream(QUESTION, hits))

    assert len(transport.requests) == 2 and events[-1].answer.text == CITED_TEXT


def test_529_overloaded_every_time_is_upstream_unavailable_after_max_retries(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [error_response(529, "overloaded_error", "Overloaded")], max_retries=2
    )

    with pytest.raises(
        UpstreamUnavailableError, match=r"after 2 retries: overloaded_error: Overloaded"
    ):
        gen.generate(QUESTION, hits)

    assert len(transport.requests) == 3


def test_stream_529_every_time_is_upstream_unavailable(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [error_response(529, "overloaded_error", "Overloaded")], max_retries=1
    )

    with pytest.raises(UpstreamUnavailableError, match="after 1 retries: overloaded_error"):
        list(gen.stream(QUESTION, hits))
    assert len(transport.requests) == 2


def test_timeouts_back_off_exponentially_then_upstream_unavailable(claude_settings, hits):
    gen, transport = _generator(claude_settings, [httpx2.ReadTimeout("timed out")], max_retries=2)

    with pytest.raises(UpstreamUnavailableError, match="after 2 retries: request timed out"):
        gen.generate(QUESTION, hits)

    assert len(transport.requests) == 3
    first, second = gen.client.retry_waits  # no retry-after: SDK backoff 0.5 s · 2^k, jitter ≤ 25 %
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


def test_connection_refused_is_upstream_unavailable(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [httpx2.ConnectError("connection refused")], max_retries=1
    )

    with pytest.raises(UpstreamUnavailableError, match="after 1 retries: connection failed"):
        gen.generate(QUESTION, hits)
    assert len(transport.requests) == 2


def test_401_is_model_unavailable_without_retry(claude_settings, hits):
    gen, transport = _generator(
        claude_settings, [error_response(401, "authentication_error", "invalid x-api-key")]
    )

    with pytest.raises(ModelUnavailableError, match="invalid API key"):
        gen.generate(QUESTION, hits)
    assert len(transport.requests) == 1


def test_400_is_generation_error_with_the_api_message(claude_settings, hits):
    message = "messages.0.content.0.search_result.content: at least one text block is required"
    gen, transport = _generator(
        claude_settings, [error_response(400, "invalid_request_error", message)]
    )

    with pytest.raises(GenerationError, match="at least one text block is required") as info:
        gen.generate(QUESTION, hits)
    assert not isinstance(info.value, UpstreamUnavailableError)
    assert len(transport.requests) == 1


# --- construction -----------------------------------------------------------------------


def test_without_a_key_the_generator_is_unavailable(settings):
    with pytest.raises(ModelUnavailableError, match="ANTHROPIC_API_KEY"):
        ClaudeGenerator(settings)


def test_client_is_built_from_settings(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    settings = Settings(
        anthropic_base_url="http://proxy.test:8080", claude_timeout_s=7.5, claude_max_retries=4
    )

    gen = ClaudeGenerator(settings)

    assert isinstance(gen, Generator) and gen.name == "claude"
    assert isinstance(gen.client, anthropic.Anthropic)
    assert gen.client.api_key == "sk-from-env"
    assert str(gen.client.base_url).rstrip("/") == "http://proxy.test:8080"
    assert gen.client.timeout == 7.5
    assert gen.client.max_retries == 4
    assert gen.model == "claude-sonnet-4-5"
    assert "sk-from-env" not in repr(settings)  # the key stays a SecretStr


def test_adapters_and_empty_questions_are_rejected_before_any_request(claude_settings, hits):
    gen, transport = _generator(claude_settings, [json_response(_cited_body())])

    with pytest.raises(InvalidInputError, match="adapter"):
        gen.generate(QUESTION, hits, adapter="my-lora")
    with pytest.raises(InvalidInputError):
        list(gen.stream("   ", hits))
    assert transport.requests == []
