"""The ingest lock that lives with a Chroma server, so API workers and ``mlrag ingest`` runs
on different machines never ingest into one collection at the same time.

The file lock in the data dir (:func:`ingest.pipeline.ingest_lock`) only covers one machine.
This lock is one record in a small dedicated collection (``<collection>-locks``) with an
owner id and a lease expiry:

* acquire: delete the record *only if its lease expired* (``delete`` with a ``where`` on the
  expiry), ``add`` ours (Chroma's ``add`` leaves an existing id untouched), then read the
  record back: we hold the lock when it names us;
* hold: a heartbeat thread extends the lease every ``lease_s / 3``;
* release: delete the record *only if it still names us*.

Limits (Chroma has no compare-and-swap): the lock is sound when one Chroma server applies
the writes in order (``chroma run``; not a distributed deployment with eventually consistent
reads), when the machines' clocks agree to well within the lease (expiry is wall time), and
when a holder does not stall longer than the lease (a process paused past its lease can lose
the lock while still writing; it notices at its next heartbeat and logs it). Ingest is
idempotent (chunk id = document + content hash), so such an overlap costs duplicate work,
not a corrupt index.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rag.errors import IngestLockedError, StoreUnavailableError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.store import ChunkStore

log = logging.getLogger(__name__)

LEASE_S = 60.0
LOCK_ID = "ingest"
_POLL_S = 0.5


def lock_collection_name(collection: str) -> str:
    """The collection holding the locks of ``collection``."""
    return f"{collection}-locks"


def process_owner() -> str:
    """This process, as lock records name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe_holder(holder: dict[str, Any]) -> str:
    """A lock record for messages: who holds it and until when."""
    left = max(0.0, float(holder.get("expires_at", 0.0)) - time.time())
    return f"{holder.get('owner', '?')} ({holder.get('label', 'ingest')}, lease {left:.0f} s left)"


class StoreLock:
    """A lease lock in a Chroma collection (see the module docstring for its limits)."""

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        name: str = LOCK_ID,
        lease_s: float = LEASE_S,
        label: str = "ingest",
    ) -> None:
        self.client = client
        self.collection_name = lock_collection_name(collection)
        self.name = name
        self.lease_s = lease_s
        self.label = label
        self.token = uuid.uuid4().hex  # this acquisition, distinct from other threads' ones
        self.owner = process_owner()
        self._collection: Any = None

    def _records(self) -> Any:
        if self._collection is None:
            try:
                self._collection = self.client.get_or_create_collection(
                    self.collection_name, embedding_function=None
                )
            except Exception as exc:  # noqa: BLE001 - any client failure means the same
                raise StoreUnavailableError(
                    f"cannot open the lock collection {self.collection_name}: {exc}"
                ) from exc
        return self._collection

    def holder(self) -> dict[str, Any] | None:
        """The live lock record (owner, token, label, expires_at), or None when free."""
        found = self._records().get(ids=[self.name], include=["metadatas"])
        if not found["ids"]:
            return None
        meta = dict(found["metadatas"][0] or {})
        if float(meta.get("expires_at", 0.0)) <= time.time():
            return None
        return meta

    def held_by_me(self) -> bool:
        """Whether the record names this acquisition."""
        holder = self.holder()
        return holder is not None and holder.get("token") == self.token

    def try_acquire(self) -> bool:
        """Take the lock if it is free or its lease expired; True when we hold it."""
        records = self._records()
        now = time.time()
        records.delete(ids=[self.name], where={"expires_at": {"$lt": now}})
        records.add(
            ids=[self.name],
            embeddings=[[0.0]],
            documents=[self.label],
            metadatas=[
                {
                    "owner": self.owner,
                    "token": self.token,
                    "label": self.label,
                    "acquired_at": now,
                    "expires_at": now + self.lease_s,
                }
            ],
        )
        return self.held_by_me()

    def acquire(self, timeout_s: float) -> None:
        """Take the lock, waiting up to ``timeout_s``; raises :class:`IngestLockedError`."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                holder = self.holder()
                who = describe_holder(holder) if holder else "another process"
                raise IngestLockedError(
                    f"another ingest into {self.collection_name.removesuffix('-locks')} is "
                    f"running: {who}; wait for it to finish or raise MLRAG_INGEST_LOCK_TIMEOUT_S"
                )
            time.sleep(_POLL_S)

    def renew(self) -> bool:
        """Extend our lease; False when the lock is no longer ours."""
        if not self.held_by_me():
            return False
        # ``update`` merges metadata: only the expiry changes.
        self._records().update(
            ids=[self.name], metadatas=[{"expires_at": time.time() + self.lease_s}]
        )
        return self.held_by_me()

    def release(self) -> None:
        """Give the lock back (a no-op when it is no longer ours)."""
        self._records().delete(ids=[self.name], where={"token": self.token})


@contextmanager
def shared_ingest_lock(
    settings: Settings, store: ChunkStore, *, label: str = "ingest"
) -> Iterator[None]:
    """Hold the Chroma-server ingest lock of ``settings.collection`` for the block (nothing
    for an embedded store, which the data dir's file lock already covers)."""
    if not getattr(store, "server", False):
        yield
        return
    lock = StoreLock(store.client, settings.collection, label=label)
    lock.acquire(settings.ingest_lock_timeout_s)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lock.lease_s / 3):
            try:
                if not lock.renew():
                    log.error("the ingest lock lease expired while this ingest was running")
                    return
            except Exception:  # noqa: BLE001 - keep trying until the lease runs out
                log.warning("renewing the ingest lock failed", exc_info=True)

    thread = threading.Thread(target=heartbeat, name="mlrag-ingest-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - the lease runs out on its own
            log.warning("releasing the ingest lock failed; it expires in %.0f s", lock.lease_s)
