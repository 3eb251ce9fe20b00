"""HTML pages to normalised Markdown: main-content extraction (trafilatura), without
navigation, footers and sidebars; a plain lxml extraction is the fallback."""

from __future__ import annotations

import logging
import re

from ingest.cleaning import html_fragment_to_text, map_prose
from ingest.loaders.markdown import markdown_to_markdown

log = logging.getLogger(__name__)

_CHROME_XPATH = (
    "//nav|//footer|//header|//aside|//script|//style|//noscript|//form|//svg|//iframe"
    "|//*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='complementary']"
)


def html_to_markdown(src: str) -> tuple[str, str | None]:
    """Main content of an HTML page as Markdown, and the page's ``<title>`` (if any)."""
    import trafilatura

    title = _page_title(src)
    text = None
    try:
        text = trafilatura.extract(
            src,
            output_format="markdown",
            include_tables=True,
            include_formatting=True,
            include_links=False,
            include_images=False,
            include_comments=False,
            favor_recall=True,
        )
    except Exception as exc:  # noqa: BLE001 - a parser failure falls back to plain extraction
        log.warning("trafilatura failed (%s); using plain extraction", exc)
    if not text or not text.strip():
        text = _plain_extraction(src)
    # trafilatura escapes Markdown characters in text (learning\_rate); the chunks show text
    text = map_prose(text, lambda t: re.sub(r"\\([\\`*_{}\[\]()#+\-.!])", r"\1", t))
    text = markdown_to_markdown(text)
    if title and not re.search(r"^#{1,6} \S", text, re.M):
        text = f"# {title}\n\n{text}"
    return text, title


def _page_title(src: str) -> str | None:
    match = re.search(r"<title[^>]*>(.*?)</title>", src, re.S | re.I)
    if not match:
        return None
    import html

    title = re.sub(r"\s+", " ", html.unescape(match.group(1))).strip()
    return title or None


def _plain_extraction(src: str) -> str:
    import lxml.html

    try:
        root = lxml.html.document_fromstring(src)
    except Exception:  # noqa: BLE001 - unparseable markup yields no text
        return ""
    for el in root.xpath(_CHROME_XPATH):
        el.drop_tree()
    body = root.find("body")
    if body is None:
        body = root
    body.tag = "div"
    return html_fragment_to_text(lxml.html.tostring(body, encoding="unicode"))
