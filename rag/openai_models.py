"""The model names an OpenAI-compatible server serves (``GET /v1/models``), cached.

vLLM lists the base model first and then one model per LoRA adapter
(``--lora-modules NAME=PATH``); llama.cpp's server lists its one model. The base model is
``settings.openai_model`` when set, else the first listed model; every other listed model is
an adapter a request may name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rag.errors import GenerationError, UnknownNameError
from rag.openai_client import translate_error


class ServerModels:
    """The server's model list, fetched at most once per ``ttl_s`` seconds (thread-safe)."""

    def __init__(
        self,
        client: Any,
        server: str,
        *,
        base_model: str | None = None,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client`` is an ``openai.OpenAI``; ``server`` its base URL (for messages)."""
        self.client = client
        self.server = server
        self.configured_base = base_model or None
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: list[str] | None = None
        self._fetched_at = 0.0

    def ids(self, refresh: bool = False) -> list[str]:
        """Every model id the server lists, in its order (typed errors when unreachable)."""
        with self._lock:
            fresh = self._ids is not None and self._clock() - self._fetched_at < self.ttl_s
            if fresh and not refresh:
                return list(self._ids or [])
            try:
                ids = [model.id for model in self.client.models.list()]
            except Exception as exc:  # noqa: BLE001 - translated into one typed error
                raise translate_error(exc, self.server) from exc
            self._ids, self._fetched_at = ids, self._clock()
            return list(ids)

    def base_model(self) -> str:
        """The base model's name: the configured one, else the first the server lists."""
        if self.configured_base:
            return self.configured_base
        ids = self.ids()
        if not ids:
            raise GenerationError(f"inference server {self.server} lists no models")
        return ids[0]

    def adapter_names(self) -> list[str]:
        """The listed models other than the base model (vLLM's LoRA adapters)."""
        base = self.base_model()
        return [name for name in self.ids() if name != base]

    def model_for(self, adapter: str | None) -> str:
        """The server model that serves ``adapter`` (the base model for None);
        UnknownNameError listing the available adapters when the server does not list it.
        An adapter missing from a cached list triggers one fresh listing (it may be new)."""
        if adapter is None:
            return self.base_model()
        for refresh in (False, True):
            names = self.adapter_names() if not refresh else self._adapters_fresh()
            if adapter in names:
                return adapter
        available = ", ".join(self._adapters_cached()) or "none"
        raise UnknownNameError(
            f"unknown adapter {adapter!r} on inference server {self.server}; available: {available}"
        )

    def _adapters_fresh(self) -> list[str]:
        self.ids(refresh=True)
        return self.adapter_names()

    def _adapters_cached(self) -> list[str]:
        return self.adapter_names()
