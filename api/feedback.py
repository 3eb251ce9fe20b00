"""Thumbs up/down feedback, appended to ``data_dir/feedback.jsonl`` (one JSON object a line).

Writes hold a thread lock and a file lock, so concurrent requests and several server
processes never interleave lines.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from filelock import FileLock


class FeedbackStore:
    """Append-only JSONL feedback log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _file_lock(self) -> FileLock:
        return FileLock(str(self.path) + ".lock", timeout=10)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store one feedback record (an id and a timestamp are added) and return it."""
        entry = {"id": uuid.uuid4().hex, "created_at": time.time(), **record}
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._file_lock(), self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        return entry

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` records, oldest first (unparseable lines are skipped)."""
        if not self.path.exists():
            return []
        with self._lock, self._file_lock():
            lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines[-limit:]:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
