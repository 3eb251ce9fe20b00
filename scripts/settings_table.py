"""Print the README's settings table from rag.config.Settings (run after adding a setting:
``python scripts/settings_table.py``; tests/rag/test_config.py checks the README has a row
for every setting)."""

from __future__ import annotations

from rag.config import Settings


def settings_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        env = f"MLRAG_{name.upper()}"
        if name == "anthropic_api_key":
            env = "ANTHROPIC_API_KEY (or MLRAG_ANTHROPIC_API_KEY)"
        default = field.get_default(call_default_factory=True)
        shown = "—" if default is None else str(default)
        if "PROJECT_ROOT" in repr(field.default) or name == "sources":
            shown = "corpus/sources.toml"
        rows.append((env, shown, field.description or ""))
    return rows


def main() -> None:
    print("| variable | default | meaning |")
    print("|---|---|---|")
    for env, default, desc in settings_rows():
        print(f"| `{env}` | `{default}` | {desc} |")


if __name__ == "__main__":
    main()
