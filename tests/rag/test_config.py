"""Settings: env prefix, mlrag.toml, explicit values, secrets, and the README table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import Settings
from tests.conftest import REPO_ROOT


def test_defaults_work_offline(tmp_path: Path) -> None:
    s = Settings()
    assert s.data_dir == Path("data")
    assert s.chroma_url is None
    assert s.anthropic_api_key is None
    assert s.sources.name == "sources.toml"


def test_env_prefix_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRAG_DATA_DIR", "/tmp/somewhere")
    monkeypatch.setenv("MLRAG_K", "7")
    monkeypatch.setenv("MLRAG_SOURCE_BOOST", '{"machine-learning": 1.5}')
    s = Settings()
    assert s.data_dir == Path("/tmp/somewhere")
    assert s.k == 7
    assert s.source_boost == {"machine-learning": 1.5}


def test_toml_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "mlrag.toml"
    cfg.write_text('k = 9\nretriever = "bm25"\n')
    monkeypatch.setenv("MLRAG_CONFIG", str(cfg))
    assert Settings().k == 9
    monkeypatch.setenv("MLRAG_K", "3")
    s = Settings()
    assert (s.k, s.retriever) == (3, "bm25")


def test_anthropic_key_from_standard_variable_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    s = Settings()
    assert s.anthropic_api_key is not None
    assert s.anthropic_api_key.get_secret_value() == "sk-ant-secret"
    assert "sk-ant-secret" not in repr(s)
    assert "sk-ant-secret" not in str(s.public_dict())


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(k=0)
    with pytest.raises(ValidationError):
        Settings(chunk_tokens=10_000)


def test_readme_documents_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [
        name
        for name in Settings.model_fields
        if f"MLRAG_{name.upper()}" not in readme and name != "anthropic_api_key"
    ]
    assert not missing, f"README settings table lacks: {missing} (run scripts/settings_table.py)"


def test_settings_sections_partition_the_flat_names(monkeypatch) -> None:
    from rag.config import (
        CoreSettings,
        GenerationSettings,
        IngestSettings,
        RetrievalSettings,
        ServiceSettings,
        SlackSettings,
    )

    sections = (
        CoreSettings,
        IngestSettings,
        RetrievalSettings,
        GenerationSettings,
        ServiceSettings,
        SlackSettings,
    )
    names = [name for section in sections for name in section.model_fields]
    assert sorted(names) == sorted(Settings.model_fields)  # each setting in exactly one section
    # The environment names users set keep working; each part reads its own section.
    monkeypatch.setenv("MLRAG_K", "7")
    monkeypatch.setenv("MLRAG_SOURCE_BOOST", '{"numpy": 1.5}')
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    monkeypatch.setenv("MLRAG_SLACK_API_URL", "http://127.0.0.1:9/api/")
    settings = Settings()
    assert settings.retrieval.k == 7 and settings.retrieval.source_boost == {"numpy": 1.5}
    assert settings.generation.anthropic_api_key.get_secret_value() == "sk-ant-x"
    assert settings.slack.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.model_copy(update={"k": 3}).retrieval.k == 3
    assert isinstance(settings, RetrievalSettings)  # a whole Settings also serves as a section
