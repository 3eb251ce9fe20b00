"""Adapter summaries and eval metrics recorded in ``mlrag.json``."""

from __future__ import annotations

import json

import pytest

from finetune.registry import adapter_summaries, format_table, record_metrics
from rag.errors import UnknownNameError


def fake_adapter(settings, name: str, meta: dict) -> None:
    folder = settings.adapters_dir / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "mlrag.json").write_text(json.dumps(meta), encoding="utf-8")


def test_metrics_are_merged_and_listed(settings) -> None:
    fake_adapter(
        settings,
        "a1",
        {
            "base_model": "m",
            "hyperparameters": {"r": 8},
            "data_hash": "ab" * 32,
            "final_train_loss": 1.25,
            "best_dev_loss": 1.5,
            "metrics": {"old": 1},
        },
    )
    meta = record_metrics(settings, "a1", {"test_token_f1": 0.5})
    assert meta["metrics"] == {"old": 1, "test_token_f1": 0.5}
    [row] = adapter_summaries(settings)
    assert row == {
        "name": "a1",
        "base": "m",
        "prompt": 1,  # no recorded prompt version: trained before it was recorded
        "qlora": None,
        "r": 8,
        "data_hash": "abababababab",
        "train_loss": 1.25,
        "dev_loss": 1.5,
        "metrics": {"old": 1, "test_token_f1": 0.5},
        "created": "",
    }
    table = format_table([row]).splitlines()
    assert table[1].split()[:4] == ["a1", "m", "1", "8"] and "test_token_f1=0.500" in table[1]
    assert [
        p.name for p in (settings.adapters_dir / "a1").iterdir() if p.name.startswith(".")
    ] == []
    with pytest.raises(UnknownNameError):
        record_metrics(settings, "missing", {})
    assert format_table([]) == "no adapters"


def test_adapters_trained_on_an_old_prompt_format_are_reported_when_served(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from rag.local_models import LocalModelManager
    from rag.prompt import PROMPT_VERSION

    fake_adapter(settings, "old", {"base_model": "m"})
    fake_adapter(settings, "new", {"base_model": "m", "prompt_version": PROMPT_VERSION})
    manager = LocalModelManager(settings)
    with caplog.at_level(logging.WARNING, logger="rag.local_models"):
        manager._warn_if_old_format("new")
        manager._warn_if_old_format("old")
        manager._warn_if_old_format("old")  # once per adapter
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'old' was trained on prompt format 1" in warnings[0]
