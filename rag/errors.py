"""Typed exceptions raised by the core. The API maps them to HTTP status codes and the CLI
prints their message on one line and exits non-zero."""

from __future__ import annotations


class MlragError(Exception):
    """Base class of every error the project raises on purpose."""

    code: str = "internal_error"
    http_status: int = 500


class InvalidInputError(MlragError, ValueError):
    """The caller gave a value that cannot be used (empty question, bad k, ...)."""

    code = "invalid_input"
    http_status = 400


class UnknownNameError(InvalidInputError):
    """A retriever, generator, adapter or other registry name that does not exist."""

    code = "unknown_name"
    http_status = 400


class EmptyIndexError(MlragError):
    """Nothing has been ingested yet, so there is nothing to search."""

    code = "empty_index"
    http_status = 503


class ModelUnavailableError(MlragError):
    """A model file or package is missing, or a model cannot be loaded."""

    code = "model_unavailable"
    http_status = 503


class GenerationError(MlragError):
    """The generator failed (possibly mid-answer); no partial answer is returned as complete."""

    code = "generation_failed"
    http_status = 502


class UpstreamUnavailableError(GenerationError):
    """A remote model (Claude, an OpenAI-compatible server) is unreachable, overloaded or
    rate-limited after all retries; ``retry_after`` is the server's Retry-After in seconds,
    when it sent one."""

    code = "upstream_unavailable"
    http_status = 503

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeoutError(UpstreamUnavailableError):
    """A remote model did not answer (or stopped sending tokens) within its timeout."""

    code = "upstream_timeout"
    http_status = 504


class CapacityError(MlragError):
    """The generator queue is full; retry later."""

    code = "capacity_exhausted"
    http_status = 503


class IngestLockedError(MlragError):
    """Another ingest holds the data directory's lock."""

    code = "ingest_locked"
    http_status = 409


class SourceError(MlragError):
    """One source could not be loaded (missing path, bad bytes, HTTP error, ...)."""

    code = "source_failed"
    http_status = 422


class ConfigError(MlragError):
    """A configuration or sources file is malformed."""

    code = "bad_config"
    http_status = 500


class StoreUnavailableError(MlragError):
    """The index cannot be opened or read (a corrupt or half-deleted Chroma store); rebuild it
    with ``mlrag ingest --rebuild``."""

    code = "store_unavailable"
    http_status = 503


class StoreWriteError(MlragError):
    """Writing to the index failed (disk full, read-only file system, ...); nothing half-written
    is kept as current, and a rerun after fixing the cause converges."""

    code = "store_write_failed"
    http_status = 507
