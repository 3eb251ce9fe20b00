"""Repeated questions are instant: a small in-memory LRU of finished answers.

The pipeline keys an answer on the condensed query, the answer settings (retriever,
generator, adapter, k, strict, filters) and the corpus version, so a follow-up that condenses
to a question asked before hits, and an ingest (a new corpus version) makes every older entry
unreachable. Hits and misses are counted for ``/metrics``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from rag.types import Answer


class AnswerCache:
    """At most ``size`` answers, least recently used evicted first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Answer | None:
        """The cached answer for ``key`` (counted as a hit), or None (a miss)."""
        if self.size <= 0:
            return None
        with self._lock:
            answer = self._entries.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: Hashable, answer: Answer) -> None:
        """Remember ``answer`` (a no-op when the cache is off)."""
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
