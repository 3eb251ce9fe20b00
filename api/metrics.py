"""Prometheus metrics in a per-app registry (several apps in one process, as in tests, never
share or clash on collectors).

With several API workers (``mlrag serve --workers N``) each worker is its own process:
``mlrag serve`` then sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, every
worker writes its values there (prometheus_client's multiprocess mode), and ``/metrics`` on
any worker answers the sum over all workers."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rag.types import Answer

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder shared by the workers' metrics, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The service's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "mlrag_http_request_duration_seconds",
            "HTTP request latency by route template (streams: until the last byte).",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mlrag_http_requests_in_flight",
            "HTTP requests being handled.",
            registry=self.registry,
            multiprocess_mode="livesum",  # summed over live workers
        )
        self.retrieval_seconds = Histogram(
            "mlrag_retrieval_seconds",
            "Retrieval time per search or answer.",
            ["retriever"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generation_seconds = Histogram(
            "mlrag_generation_seconds",
            "Generation time per answer.",
            ["generator"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens_generated = Counter(
            "mlrag_generated_tokens_total",
            "Answer tokens produced: streamed token events, or whitespace tokens of non-streamed answers.",
            ["generator"],
            registry=self.registry,
        )
        self.answers = Counter(
            "mlrag_answers_total", "Answers returned.", ["generator"], registry=self.registry
        )
        self.abstentions = Counter(
            "mlrag_abstentions_total",
            "Answers that abstained (context does not cover the question).",
            ["generator"],
            registry=self.registry,
        )
        self.generation_errors = Counter(
            "mlrag_generation_errors_total",
            "Answers that failed (including mid-stream failures and timeouts).",
            ["code"],
            registry=self.registry,
        )
        self.capacity_rejections = Counter(
            "mlrag_capacity_rejections_total",
            "Requests refused with 503 because generation capacity was exhausted.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "mlrag_rate_limited_total", "Requests refused with 429.", registry=self.registry
        )
        self.answer_cache = Counter(
            "mlrag_answer_cache_total",
            "Answers served from the answer cache (hit) or generated (miss); the hit rate is "
            'hit / (hit + miss): rate(mlrag_answer_cache_total{result="hit"}[5m]) / '
            "rate(mlrag_answer_cache_total[5m]).",
            ["result"],
            registry=self.registry,
        )

    def observe_answer(self, answer: Answer, streamed_tokens: int | None = None) -> None:
        """Record one finished answer's timings, tokens and abstention."""
        generator = answer.generator or "unknown"
        timings = answer.timings_ms or {}
        if "retrieve" in timings:
            self.retrieval_seconds.labels(answer.retriever or "unknown").observe(
                timings["retrieve"] / 1000
            )
        if "generate" in timings:
            self.generation_seconds.labels(generator).observe(timings["generate"] / 1000)
        tokens = streamed_tokens if streamed_tokens is not None else len(answer.text.split())
        self.tokens_generated.labels(generator).inc(tokens)
        self.answers.labels(generator).inc()
        self.answer_cache.labels("hit" if answer.cached else "miss").inc()
        if answer.abstained:
            self.abstentions.labels(generator).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus text format (of every worker in multiprocess mode)."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)

    def close(self) -> None:
        """At worker exit: drop this process's live gauges from the shared folder."""
        if multiprocess_dir() is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
