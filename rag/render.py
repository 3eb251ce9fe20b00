"""One renderer for answers and their citations, in every format a front door shows:

* :func:`render_text` — the terminal (``mlrag ask``): wrapped text, then numbered sources
  with the quoted sentence;
* :func:`render_sources_markdown` — the sources block appended to an OpenAI-compatible chat
  completion's message;
* :func:`render_slack` — Slack's ``(text, blocks)`` in mrkdwn.

The web chat page renders the same JSON in the browser (api/static).
"""

from __future__ import annotations

import textwrap
from typing import Any

from rag.types import Answer, Citation

SLACK_SECTION_LIMIT = 2900  # Slack caps a section's text at 3000 characters
SLACK_DECLINE_PREFIX = "I could not find this in the documents, so I won't guess."


def citation_heading(c: Citation) -> str:
    """``Title > Section`` of a citation (its source when untitled)."""
    return " > ".join(p for p in (c.title, c.section) if p) or c.source


def render_text(answer: Answer, width: int = 100) -> str:
    """Human-readable answer: the text, then numbered sources with their quoted sentence."""
    lines = [
        textwrap.fill(answer.text, width=width, break_long_words=False, break_on_hyphens=False)
    ]
    if answer.abstained:
        lines.append("")
        lines.append("(abstained: the corpus does not cover this question)")
        return "\n".join(lines)
    if answer.citations:
        lines.append("")
        lines.append("Sources:")
        for c in answer.citations:
            lines.append(f"[{c.n}] {citation_heading(c)}")
            if c.url or c.source:
                lines.append(f"    {c.url or c.source}")
            lines.append(f'    "{c.quote}"')
    if answer.unsupported:
        lines.append("")
        lines.append(f"({len(answer.unsupported)} sentence(s) not supported by the cited context)")
    if answer.removed_citations:
        lines.append(
            f"({answer.removed_citations} citation marker(s) pointing at no source removed)"
        )
    return "\n".join(lines)


def render_sources_markdown(answer: Answer) -> str:
    """Numbered sources to append to a chat message (empty for abstentions)."""
    if answer.abstained or not answer.citations:
        return ""
    lines = ["", "", "Sources:"]
    for c in answer.citations:
        where = f" — {c.url}" if c.url else (f" — {c.source}" if c.source else "")
        lines.append(f"[{c.n}] {c.title or c.source}{where}")
        if c.quote:
            lines.append(f'    "{c.quote}"')
    return "\n".join(lines)


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SLACK_SECTION_LIMIT]}}


def render_slack(answer: Answer) -> tuple[str, list[dict[str, Any]]]:
    """(top-level text, blocks) of a Slack reply: the answer and its sources, or the
    abstention."""
    if answer.abstained:
        text = f"{SLACK_DECLINE_PREFIX} {slack_escape(answer.text)}"
        return text, [_slack_section(text)]
    body = slack_escape(answer.text)
    source_lines = []
    for c in answer.citations:
        title = slack_escape(c.title or c.source or c.url)
        link = f"<{c.url}|{title}>" if c.url else title
        line = f"[{c.n}] {link}"
        if c.quote:
            line += f"\n> {slack_escape(c.quote)}"
        source_lines.append(line)
    sources = "*Sources*\n" + "\n".join(source_lines) if source_lines else ""
    text = body + (f"\n\n{sources}" if sources else "")
    blocks: list[dict[str, Any]] = [_slack_section(body)]
    if sources:
        blocks.append({"type": "divider"})
        blocks.append(_slack_section(sources))
    return text, blocks
