"""Listing trained adapters and recording their eval metrics, on top of
:class:`rag.local_models.AdapterRegistry` (which owns where adapters live and how they are
named)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.local_models import ADAPTER_METADATA, AdapterRegistry

if TYPE_CHECKING:
    from rag.config import Settings


def registry(settings: Settings) -> AdapterRegistry:
    """The adapter registry of ``settings.adapters_dir``."""
    return AdapterRegistry(settings.adapters_dir)


def adapter_summaries(settings: Settings) -> list[dict[str, Any]]:
    """One row per adapter: name, base, r, data hash (short), losses, metrics."""
    reg = registry(settings)
    rows = []
    for name in reg.names():
        meta = reg.metadata(name)
        hyper = meta.get("hyperparameters", {})
        rows.append(
            {
                "name": name,
                "base": meta.get("base_model", "?"),
                # Adapters from before the version was recorded were trained on format 1.
                "prompt": meta.get("prompt_version", 1),
                "qlora": meta.get("qlora"),
                "r": hyper.get("r"),
                "data_hash": str(meta.get("data_hash", ""))[:12],
                "train_loss": meta.get("final_train_loss"),
                "dev_loss": meta.get("best_dev_loss", meta.get("final_dev_loss")),
                "metrics": meta.get("metrics", {}),
                "created": meta.get("created", ""),
            }
        )
    return rows


def record_metrics(settings: Settings, name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge ``metrics`` into adapter ``name``'s ``mlrag.json`` (atomically) and return the
    updated metadata; UnknownNameError when there is no such adapter."""
    folder = registry(settings).path(name)
    meta = registry(settings).metadata(name)
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    fd, tmp = tempfile.mkstemp(prefix=".mlrag-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2, default=str)
    os.replace(tmp, Path(folder) / ADAPTER_METADATA)
    return meta


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summaries as an aligned text table (``mlrag finetune list``)."""
    if not rows:
        return "no adapters"
    headers = ["name", "base", "prompt", "r", "qlora", "data", "train_loss", "dev_loss", "metrics"]

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get({"data": "data_hash"}.get(key, key))
        if key == "metrics":
            return (
                ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in (value or {}).items()
                )
                or "-"
            )
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None or value == "" else str(value)

    table = [headers] + [[cell(r, h) for h in headers] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )
