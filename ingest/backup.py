"""``mlrag ingest --backup FILE`` / ``--restore FILE``: the embedded index, the ingest state
and the feedback log in one ``.tar.gz``.

A backup is consistent: it is taken under the ingest lock, so no ingest writes the store
while it is copied (a running ``mlrag serve`` only reads it). The archive is written beside
its destination and renamed into place, so a failed backup never leaves a truncated file
under the requested name. A restore unpacks into a temporary folder inside the data dir
first and then moves the pieces into place; it refuses a data dir that already holds any of
them unless forced. With a Chroma server (``MLRAG_CHROMA_URL``) the index lives in the
server: back up the server's volume instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from rag.config import Settings

MANIFEST = "mlrag-backup.json"
FORMAT = 1
CHROMA = "chroma"  # the embedded store's folder inside the archive (and the data dir)
FEEDBACK = "feedback.jsonl"


def _state_file() -> str:
    from ingest.pipeline import STATE_FILE

    return STATE_FILE


@dataclass(frozen=True)
class BackupInfo:
    """What an archive holds."""

    path: Path
    members: list[str]  # top-level names: chroma, ingest_state.json, feedback.jsonl
    collection: str
    created: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON shape printed by ``--json``."""
        return {
            "path": str(self.path),
            "members": self.members,
            "collection": self.collection,
            "created": self.created,
            "size_bytes": self.size_bytes,
        }


def _refuse_server(settings: Settings, action: str) -> None:
    if settings.chroma_url:
        raise ConfigError(
            f"--{action} covers the embedded store only; with a Chroma server "
            "(MLRAG_CHROMA_URL) back up and restore the server's volume"
        )


def create_backup(settings: Settings, path: Path) -> BackupInfo:
    """Write the index, ingest state and feedback log of ``settings.data_dir`` to the
    ``.tar.gz`` at ``path``, under the ingest lock. Raises :class:`ConfigError` when there is
    no embedded index to back up, :class:`~rag.errors.IngestLockedError` when an ingest
    holds the lock."""
    from ingest.pipeline import acquire_ingest_lock

    _refuse_server(settings, "backup")
    path = path.expanduser().absolute()
    lock = acquire_ingest_lock(settings)
    try:
        if not (settings.chroma_dir / "chroma.sqlite3").is_file():
            raise ConfigError(f"no index to back up in {settings.chroma_dir} (run `mlrag ingest`)")
        members = [CHROMA]
        members += [n for n in (_state_file(), FEEDBACK) if (settings.data_dir / n).is_file()]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {
            "format": FORMAT,
            "collection": settings.collection,
            "created": created,
            "members": members,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            with tarfile.open(partial, "w:gz") as archive:
                manifest_file = settings.data_dir / f".{MANIFEST}.{os.getpid()}"
                manifest_file.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
                try:
                    archive.add(manifest_file, arcname=MANIFEST)
                finally:
                    manifest_file.unlink(missing_ok=True)
                for name in members:
                    archive.add(settings.data_dir / name, arcname=name)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        lock.release()
    return BackupInfo(path, members, settings.collection, created, path.stat().st_size)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a backup archive; raises :class:`InvalidInputError` when ``path`` is
    not an mlrag backup."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest = json.loads(member.read().decode("utf-8"))
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not an mlrag backup ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{path}: unsupported backup format {manifest!r:.80}")
    return manifest


def restore_backup(settings: Settings, path: Path, *, force: bool = False) -> BackupInfo:
    """Put the index, ingest state and feedback log of the backup at ``path`` into
    ``settings.data_dir``, under the ingest lock. Refuses (:class:`ConfigError`) a data dir
    that already has an index, ingest state or feedback log unless ``force``; with ``force``
    those are replaced (models, adapters and other files are kept). Restart a running
    ``mlrag serve`` afterwards."""
    from ingest.pipeline import acquire_ingest_lock
    from ingest.rebuild import swap_in
    from rag.store import release_embedded_client

    _refuse_server(settings, "restore")
    path = path.expanduser().absolute()
    manifest = read_manifest(path)
    members = [str(m) for m in manifest.get("members", [])]
    if CHROMA not in members or not set(members) <= {CHROMA, _state_file(), FEEDBACK}:
        raise InvalidInputError(f"{path}: unexpected backup contents {members}")
    data_dir = settings.data_dir
    lock = acquire_ingest_lock(settings)
    try:
        present = [n for n in (CHROMA, _state_file(), FEEDBACK) if (data_dir / n).exists()]
        if present and not force:
            raise ConfigError(
                f"{data_dir} already holds {', '.join(present)}; restore into an empty data "
                "dir (--data-dir) or add --force to replace them"
            )
        staging = data_dir / f".restore-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            with tarfile.open(path, "r:gz") as archive:
                # The "data" filter refuses absolute paths, "..", links out of the folder
                # and device files: an archive cannot write outside the staging folder.
                archive.extractall(staging, filter="data")
            if not (staging / CHROMA / "chroma.sqlite3").is_file():
                raise InvalidInputError(f"{path}: the archive holds no Chroma store")
            release_embedded_client(settings.chroma_dir)
            swap_in(settings, staging / CHROMA)
            for name in (_state_file(), FEEDBACK):
                target = data_dir / name
                if name in members:
                    (staging / name).replace(target)
                elif force:
                    target.unlink(missing_ok=True)  # the restored state had none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return BackupInfo(
        path,
        members,
        str(manifest.get("collection", "")),
        str(manifest.get("created", "")),
        path.stat().st_size,
    )
