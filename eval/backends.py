"""Where the runner gets hits and answers from: the in-process :class:`rag.pipeline.RAG`, or a
running service over HTTP (``--url``: ``POST /v1/search`` and ``POST /v1/ask``).

Both return plain JSON-shaped dicts (:meth:`rag.types.Hit.to_dict`, :meth:`rag.types.Answer.to_dict`
with ``hits``), so scoring does not care where they came from.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from rag.errors import (
    EmptyIndexError,
    InvalidInputError,
    MlragError,
    ModelUnavailableError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from rag.pipeline import RAG
    from rag.types import Turn

HitDict = dict[str, Any]
AnswerDict = dict[str, Any]


class Backend(Protocol):
    """A source of hits and answers."""

    label: str  # "in-process" or the service URL

    def corpus_version(self, retriever: str = "") -> str:
        """The corpus version of the index ``retriever`` searches ("" when unknown)."""
        ...

    def unavailable(self, retriever: str) -> str | None:
        """Why ``retriever`` cannot be used, or None when it can."""
        ...

    def search(self, question: str, k: int, retriever: str) -> tuple[list[HitDict], float]:
        """The top ``k`` hits and the wall time of the call in ms."""
        ...

    def ask(
        self,
        question: str,
        k: int,
        retriever: str,
        generator: str,
        adapter: str | None,
        history: list[Turn] | None = None,
    ) -> AnswerDict:
        """An answer dict with ``hits`` (the context it was generated from); ``history`` is
        the conversation before a follow-up question."""
        ...


class InProcessBackend:
    """The pipeline in this process."""

    label = "in-process"

    def __init__(self, rag: RAG) -> None:
        self.rag = rag

    def corpus_version(self, retriever: str = "") -> str:
        """The recorded corpus version of the collection ``retriever`` searches."""
        if retriever == "baseline":
            from rag.retrieval.baseline import baseline_collection_name
            from rag.store import ChunkStore

            name = baseline_collection_name(self.rag.settings)
            return ChunkStore(self.rag.store.client, name, self.rag.embedder).corpus_version()
        return self.rag.store.corpus_version()

    def unavailable(self, retriever: str) -> str | None:
        """Build the retriever once; a missing model or empty index makes it unavailable."""
        try:
            self.rag.retriever(retriever).search("availability check", 1)
        except (ModelUnavailableError, EmptyIndexError, UnknownNameError) as exc:
            return str(exc)
        return None

    def search(self, question: str, k: int, retriever: str) -> tuple[list[HitDict], float]:
        """Hits from ``rag.search``; the query-embedding cache is cleared first so every
        retriever's latency includes embedding the query (otherwise the second retriever
        asked the same question would look faster than it is)."""
        cache = getattr(self.rag.embedder, "_query_cache", None)
        if cache is not None:
            cache.clear()
        started = time.perf_counter()
        hits = self.rag.search(question, k=k, retriever=retriever)
        elapsed = (time.perf_counter() - started) * 1000
        return [h.to_dict() for h in hits], elapsed

    def ask(
        self,
        question: str,
        k: int,
        retriever: str,
        generator: str,
        adapter: str | None,
        history: list[Turn] | None = None,
    ) -> AnswerDict:
        """``rag.ask`` as a dict, with the hits it was generated from."""
        answer = self.rag.ask(
            question,
            k=k,
            retriever=retriever,
            generator=generator,
            adapter=adapter or None,
            history=history or None,
        )
        return answer.to_dict(include_hits=True)


class HttpBackend:
    """A running ``mlrag serve``; the API key, if any, goes in ``Authorization``."""

    def __init__(
        self, url: str, api_key: str | None = None, timeout_s: float = 300.0, client: Any = None
    ) -> None:
        import httpx

        self.label = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(
            base_url=self.label, headers=headers, timeout=timeout_s
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise MlragError(f"{self.label}{path}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            message = (
                f"{path} {response.status_code}: {error.get('message') or response.text[:200]}"
            )
            code = error.get("code", "")
            if code in ("unknown_name", "model_unavailable", "empty_index"):
                raise ModelUnavailableError(message)
            if response.status_code < 500:
                raise InvalidInputError(message)
            raise MlragError(message)
        return response.json()

    def corpus_version(self, retriever: str = "") -> str:
        """Not exposed by the API: recorded as unknown."""
        return ""

    def unavailable(self, retriever: str) -> str | None:
        """Ask the service for one hit; its 4xx/503 reason makes the retriever unavailable."""
        try:
            self._post(
                "/v1/search", {"query": "availability check", "k": 1, "retriever": retriever}
            )
        except (ModelUnavailableError, InvalidInputError) as exc:
            return str(exc)
        return None

    def search(self, question: str, k: int, retriever: str) -> tuple[list[HitDict], float]:
        """Hits from ``/v1/search`` and the round-trip time."""
        started = time.perf_counter()
        data = self._post("/v1/search", {"query": question, "k": k, "retriever": retriever})
        return list(data["hits"]), (time.perf_counter() - started) * 1000

    def ask(
        self,
        question: str,
        k: int,
        retriever: str,
        generator: str,
        adapter: str | None,
        history: list[Turn] | None = None,
    ) -> AnswerDict:
        """``/v1/ask``; the API does not return the context, so the same search is repeated
        (retrieval is deterministic) to judge citations against what the answer cited — for a
        follow-up, with the heuristically condensed query."""
        body: dict[str, Any] = {
            "question": question,
            "k": k,
            "retriever": retriever,
            "generator": generator,
        }
        if adapter:
            body["adapter"] = adapter
        if history:
            body["history"] = [{"role": t.role, "content": t.content} for t in history]
        answer = self._post("/v1/ask", body)
        query = question
        if history:
            from rag.query_rewrite import condense_query

            query = condense_query(question, history)
        answer["hits"], _ = self.search(query, k, retriever)
        return answer
