"""The README's settings table, generated from rag.config.Settings.

``python scripts/settings_table.py`` prints it; ``--write`` replaces the table between the
README's ``<!-- settings:start -->`` / ``<!-- settings:end -->`` markers. tests/rag/test_config.py
checks the README has a row for every setting."""

from __future__ import annotations

import sys
from pathlib import Path

from rag.config import (
    CoreSettings,
    GenerationSettings,
    IngestSettings,
    RetrievalSettings,
    ServiceSettings,
    Settings,
    SlackSettings,
)

# The sections of rag.config, in the order the table lists them (``settings.<section>``).
SECTIONS = (
    ("core", CoreSettings),
    ("ingest", IngestSettings),
    ("retrieval", RetrievalSettings),
    ("generation", GenerationSettings),
    ("service", ServiceSettings),
    ("slack", SlackSettings),
)


def settings_rows() -> list[tuple[str, str, str, str]]:
    """(section, environment variable, default, description) for every setting."""
    rows = []
    for section, model in SECTIONS:
        for name in model.model_fields:
            rows.append((section, *_row(name)))
    return rows


def _row(name: str) -> tuple[str, str, str]:
    """(environment variable, default, description) of one setting."""
    field = Settings.model_fields[name]
    env = f"MLRAG_{name.upper()}"
    if name == "anthropic_api_key":
        env = "ANTHROPIC_API_KEY (or MLRAG_ANTHROPIC_API_KEY)"
    if name == "openai_api_key":
        env = "OPENAI_API_KEY (or MLRAG_OPENAI_API_KEY)"
    default = field.get_default(call_default_factory=True)
    shown = "—" if default is None else str(default)
    if "PROJECT_ROOT" in repr(field.default) or name == "sources":
        shown = "corpus/sources.toml"
    return env, shown, field.description or ""


def render() -> str:
    """The Markdown table."""
    lines = ["| section | variable | default | meaning |", "|---|---|---|---|"]
    lines += [
        f"| {section} | `{env}` | `{default}` | {desc} |"
        for section, env, default, desc in settings_rows()
    ]
    return "\n".join(lines)


def main() -> None:
    table = render()
    if "--write" not in sys.argv:
        print(table)
        return
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- settings:start -->", "<!-- settings:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    main()
