"""Fixtures the CLI tests share with the tests of the packages the commands call."""

from tests.finetune.conftest import (  # noqa: F401 - fixtures, found by name
    chunks,
    evidence_index,
    files,
    search,
    tiny_base,
    tiny_settings,
)
