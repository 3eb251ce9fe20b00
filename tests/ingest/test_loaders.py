"""Loaders and cleaning: every format on real corpus files, noise removal, errors."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from ingest.cleaning import (
    decode_text,
    first_heading,
    iter_fence_state,
    normalize_for_match,
    normalize_whitespace,
)
from ingest.loaders import SUPPORTED_FORMATS, detect_format, load_document
from rag.errors import SourceError
from rag.types import Document
from tests.conftest import LINKED, ML_PAGE

# Markup that must never survive outside code fences.
NOISE_PATTERNS = [
    r"\.\. [\w:-]+::",  # reST directives
    r"^\.\. ",  # reST comments / targets
    r":(func|ref|class|meth|mod|attr|obj|math|setting|doc|term|sig|const|exc|program|option)`",
    r"`__?(\s|$|[.,;])",  # reST hyperlink references
    r"<(Tabs|TabItem|Infobox|Accordion|Grid|Button|Image|Tip|hfoption|hfoptions|details|summary|div|img|iframe|table)\b",
    r"\{%",  # Liquid / GitBook tags ({% hint %})
    r"\{\{",  # Hugo shortcodes, Jinja placeholders
    r"@code|@endcode",  # Doxygen
    r"\{#[\w-]+\}",  # heading anchors
    r"\{id=",
    r"\{/\*",  # MDX comments
    r"<!--",
    r"^import .* from ['\"]",  # MDX imports
    r"^!!! ",  # mkdocs admonitions
    r"\[\[\w+\]\]",  # doc-builder autodoc
    r"^[=\-~^]{4,}$",  # leftover heading adornments
    r"^\+[-=]+\+",  # grid-table borders
    r"\]\(",  # Markdown link targets
]


def _load(rel: str, **kwargs) -> Document:
    path = LINKED / rel
    if not path.exists():
        pytest.skip(f"corpus file {path} not found")
    return load_document(
        path.read_bytes(), fmt=detect_format(path.name), doc_id=rel, source=rel, **kwargs
    )


def _prose_lines(text: str) -> list[str]:
    return [line for line, inside in iter_fence_state(text.split("\n")) if not inside]


def _headings(text: str) -> list[str]:
    return [ln for ln in _prose_lines(text) if re.match(r"^#{1,6} ", ln)]


def _fences(text: str) -> list[str]:
    """Fenced blocks as text, opening line included."""
    blocks, current = [], None
    for line, inside in iter_fence_state(text.split("\n")):
        if inside and current is None:
            current = [line]
        elif inside:
            current.append(line)
            if re.fullmatch(r"`{3,}", line):
                blocks.append("\n".join(current))
                current = None
    return blocks


# --- detect_format ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "ctype", "fmt"),
    [
        ("a/b/notes.txt", None, "txt"),
        ("guide.MD", None, "md"),
        ("spacy-101.mdx", None, "mdx"),
        ("canny.markdown", None, "markdown"),
        ("calling.rst", None, "rst"),
        ("tokenize.doctest", None, "doctest"),
        ("quickstart.py", None, "py"),
        ("page.htm", None, "html"),
        ("https://x.org/docs/intro.html?x=1#frag", None, "html"),
        ("paper.pdf", None, "pdf"),
        ("https://x.org/docs/", "text/html; charset=utf-8", "html"),
        ("https://x.org/raw", "text/markdown", "md"),
        ("https://x.org/raw", "text/plain", "txt"),
        ("https://x.org/file", "application/pdf", "pdf"),
        ("https://x.org/file", "text/x-rst", "rst"),
        ("index.html", "application/pdf", "html"),  # the extension wins
    ],
)
def test_detect_format(name: str, ctype: str | None, fmt: str) -> None:
    assert detect_format(name, ctype) == fmt
    assert fmt in SUPPORTED_FORMATS


@pytest.mark.parametrize(("name", "ctype"), [("image.png", None), ("x", "image/png"), ("x", None)])
def test_detect_format_rejects_unsupported(name: str, ctype: str | None) -> None:
    with pytest.raises(SourceError, match="unsupported format"):
        detect_format(name, ctype)


# --- bad inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "txt", "empty"),
        (b"   \n\t\n  ", "md", "empty"),
        (b"<!-- only a comment -->\n", "md", "empty"),
        (b"PK\x03\x04\x00\x00binary", "txt", "binary"),
        (b"caf\xe9 au lait \xff\xfe\xfa", "rst", "undecodable"),
        (b"hello", "docx", "unsupported format"),
    ],
)
def test_bad_inputs_raise_source_error(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        load_document(data, fmt=fmt, doc_id="d", source="d")


def test_pdf_without_text_raises() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(SourceError, match="no extractable text"):
        load_document(buf.getvalue(), fmt="pdf", doc_id="p", source="blank.pdf")


def test_garbage_pdf_raises() -> None:
    with pytest.raises(SourceError):
        load_document(b"%PDF-1.4 not really a pdf", fmt="pdf", doc_id="p", source="bad.pdf")


def test_decode_text_handles_boms() -> None:
    assert decode_text("\ufeffHello".encode()) == "Hello"
    assert decode_text("Grüße".encode("utf-16")) == "Grüße"
    with pytest.raises(SourceError, match="binary"):
        decode_text(b"abc\x00def")


# --- cleaning helpers ---------------------------------------------------------------------
def test_normalize_whitespace() -> None:
    text = "Cafe\u0301  \r\n\r\n\r\n\nnext\u00a0line\u200b  \n```\ncode\n\n\n\nmore\n```\n\n\n"
    out = normalize_whitespace(text)
    assert out == "Café\n\nnext line\n\n```\ncode\n\nmore\n```\n"


def test_normalize_for_match() -> None:
    chunk = "## Title\n\n**Fancy** `code_x` in [brackets] (paren) | cell\n> ﬁne   text"
    assert normalize_for_match(chunk) == "title fancy code x in brackets paren cell fine text"
    assert normalize_for_match("Fancy code_x in") in normalize_for_match(chunk)


def test_first_heading_ignores_code() -> None:
    assert first_heading("```python\n# comment\n```\n\n## Real\n") == "Real"
    assert first_heading("no headings here") is None


# --- documents: title and metadata -------------------------------------------------------
def test_title_and_metadata_rules() -> None:
    doc = load_document(
        b"# Heading One\n\ntext",
        fmt="md",
        doc_id="d1",
        source="docs/guide.md",
        url="https://x.org/guide",
        topic="t",
        metadata={"license": "MIT"},
    )
    assert (doc.title, doc.metadata["title_source"]) == ("Heading One", "heading")
    assert doc.metadata == {
        "license": "MIT",
        "format": "md",
        "title_source": "heading",
        "topic": "t",
    }
    assert (doc.id, doc.source, doc.url) == ("d1", "docs/guide.md", "https://x.org/guide")
    given = load_document(b"# H\n\ntext", fmt="md", doc_id="d", source="a.md", title="Given")
    assert (given.title, given.metadata["title_source"]) == ("Given", "given")
    stem = load_document(b"just text", fmt="txt", doc_id="d", source="dir/my-notes.txt")
    assert (stem.title, stem.metadata["title_source"]) == ("my-notes", "filename")


def test_txt_keeps_paragraphs_and_escapes_false_structure() -> None:
    doc = load_document(
        b"First para\nline two.\n\n\n\n# not a heading\n", fmt="txt", doc_id="t", source="t.txt"
    )
    assert doc.text == "First para\nline two.\n\n\\# not a heading\n"
    assert _headings(doc.text) == []


# --- reStructuredText ---------------------------------------------------------------------
def test_rst_celery_introduction() -> None:
    doc = _load("celery/introduction.rst")
    heads = _headings(doc.text)
    assert heads[:2] == ["# Introduction to Celery", "## What's a Task Queue?"]
    assert doc.title == "Introduction to Celery"
    assert "node-celery for Node.js, a PHP client, gocelery" in doc.text  # links -> text
    assert ".. contents::" not in doc.text and ".. _intro:" not in doc.text
    assert "```python\nfrom celery import Celery" in doc.text
    assert "- **Brokers**\n  - RabbitMQ, Redis," in doc.text  # nested list, roles resolved


def test_rst_roles_tables_and_literals() -> None:
    periodic = _load("celery/periodic-tasks.rst")
    assert "you can use the `crontab` schedule type" in periodic.text  # :class:`~a.b.crontab`
    assert "**Example** | **Meaning**" in periodic.text  # grid table header row
    assert (
        "`crontab(minute=0, hour='*/3')` | Execute every three hours: midnight, 3am, 6am, 9am, "
        "noon, 3pm, 6pm, 9pm." in periodic.text
    )  # multi-line grid cell joined into one row
    dtypes = _load("scikit-image/data_types.rst")
    assert "Data type | Range\nuint8 | 0 to 255" in dtypes.text  # simple table
    assert "int32 | -2^31 to 2^31 - 1" in dtypes.text  # :sup: and escaped spaces
    optimize = _load("scipy/optimize.rst")
    assert "Solver | Bounds Constraints | Nonlinear Constraints | Uses Gradient" in optimize.text
    assert ".. list-table::" not in optimize.text


def test_rst_doctest_blocks_and_admonitions() -> None:
    doc = _load("numpy/broadcasting.rst")
    assert "```pycon\n>>> import numpy as np\n>>> a = np.array([1.0, 2.0, 3.0])" in doc.text
    assert doc.text.count("# Broadcasting") == 1
    gotchas = _load("sympy/gotchas.rst")
    assert gotchas.title == "Gotchas"
    assert "## Symbols" in _headings(gotchas.text)
    assert "```pycon\n>>> x + 1\nTraceback (most recent call last):" in gotchas.text


def test_doctest_file() -> None:
    doc = _load("nltk/tokenize.doctest")
    assert "Copyright" not in doc.text  # leading reST comments are dropped
    assert "# Regression Tests: NLTKWordTokenizer" in _headings(doc.text)
    assert '```pycon\n>>> s1 = "On a $50,000 mortgage' in doc.text


# --- Markdown family ----------------------------------------------------------------------
def test_md_hf_doc_builder() -> None:
    doc = _load("peft/lora.md")
    assert doc.title == "LoRA"
    assert "Licensed under the Apache License" not in doc.text  # HTML comment
    assert "[[autodoc]]" not in doc.text and "<hfoption" not in doc.text
    assert "Low-Rank Adaptation (LoRA) is a PEFT method" in doc.text  # link -> text
    assert "```py" in doc.text


def test_md_front_matter_mkdocs_hugo_gitbook() -> None:
    intro = _load("devops/docker_tutorial_intro.md")
    assert not intro.text.startswith("---") and "next_page" not in intro.text
    assert "Info: Pro tip\nYou can combine single character flags" in intro.text
    assert "```\ndocker run -dp 80:80 docker/getting-started\n```" in intro.text
    kubeflow = _load("devops/kubeflow_architecture.md")
    assert "+++" not in kubeflow.text and "weight = 10" not in kubeflow.text
    assert "## Kubeflow Overview Diagram" in _headings(kubeflow.text)
    evidently = _load("evidently/what_is_evidently.md")
    assert "{% hint" not in evidently.text
    assert "You are looking at the old Evidently documentation" in evidently.text  # hint text kept
    assert "Evidently Cloud | AI evaluation and observability platform" in evidently.text


def test_mdx_spacy() -> None:
    doc = _load("spacy/spacy-101.mdx")
    assert doc.title == "spaCy 101: Everything you need to know"  # from front matter
    assert doc.text.startswith("# spaCy 101: Everything you need to know\n")
    assert "## What's spaCy?" in _headings(doc.text)  # {id="..."} removed
    assert "<Infobox" not in doc.text and "<Grid" not in doc.text
    assert "Name | Description\n**Tokenization** | Segmenting text into words" in doc.text
    fences = _fences(doc.text)
    assert any(f.startswith("```python\nimport spacy") for f in fences)  # imports in code kept
    assert not any("{executable" in f.split("\n")[0] for f in fences)
    assert "**Help us improve the docs**" in doc.text  # aside heading is not a section


def test_markdown_doxygen_opencv() -> None:
    doc = _load("opencv/thresholding.markdown")
    assert doc.title == "Image Thresholding"
    heads = _headings(doc.text)
    assert heads[:3] == ["# Image Thresholding", "## Goal", "## Simple Thresholding"]
    assert "```python\nimport cv2\nimport numpy as np" in doc.text
    assert "Note: To plot multiple images" in doc.text
    assert "@code" not in doc.text and "{#tutorial" not in doc.text
    assert "![image]" not in doc.text


def test_markdown_inline_conversion() -> None:
    src = (
        "---\ntitle: T\n---\n\nimport Tabs from '@theme/Tabs'\n\n# Top {#top}\n\n"
        '<Tabs>\n<TabItem value="a">\n\nSee [docs](https://x.org) and `<kept>` code.\n\n'
        "</TabItem>\n</Tabs>\n\n{{< alert >}}Shortcode body{{< /alert >}}\n\n"
        "* star item\n+ plus item\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n~~~js\nlet x = 1;\n~~~\n"
    )
    doc = load_document(src.encode(), fmt="mdx", doc_id="m", source="m.mdx")
    assert doc.text == (
        "# Top\n\nSee docs and `<kept>` code.\n\nShortcode body\n\n- star item\n- plus item\n\n"
        "a | b\n1 | 2\n\n```js\nlet x = 1;\n```\n"
    )


# --- sphinx-gallery -----------------------------------------------------------------------
def test_sphinx_gallery_py() -> None:
    doc = _load("pytorch/quickstart.py")
    assert doc.title == "Quickstart"
    assert doc.text.startswith("# Quickstart\n")  # the series link bar is dropped
    assert "## Working with data" in _headings(doc.text)
    assert "```python\nimport torch\nfrom torch import nn" in doc.text
    assert "#####" not in doc.text
    assert "PyTorch offers domain-specific libraries such as TorchText" in doc.text
    fences = _fences(doc.text)
    assert any("class NeuralNetwork(nn.Module):" in f for f in fences)
    assert not any("PyTorch offers domain-specific" in f for f in fences)


# --- HTML ---------------------------------------------------------------------------------
HTML_PAGE = b"""<!doctype html><html><head><title>Gradient Boosting Guide</title></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/docs">Docs</a> | <a href="/blog">Blog</a></nav></header>
<aside class="sidebar"><ul><li><a href="/a">Sidebar link one</a></li><li>Sidebar two</li></ul></aside>
<main><article>
<h1>Gradient Boosting Guide</h1>
<p>Gradient boosting builds an ensemble of shallow decision trees, each one fitted to the
residual errors of the ensemble so far. It is one of the strongest methods for tabular data.</p>
<h2>Key hyperparameters</h2>
<p>The learning rate shrinks the contribution of each tree; smaller values need more trees
but usually generalise better. The maximum depth limits how complex each tree can be.</p>
<table><tr><th>Parameter</th><th>Typical value</th></tr>
<tr><td>learning_rate</td><td>0.05</td></tr><tr><td>max_depth</td><td>3</td></tr></table>
<pre><code>from sklearn.ensemble import GradientBoostingClassifier
clf = GradientBoostingClassifier(learning_rate=0.05)</code></pre>
<p>Early stopping on a validation set picks the number of trees automatically and avoids
overfitting when the learning rate is small.</p>
</article></main>
<footer><p>Copyright 2024 Example Corp. All rights reserved. Privacy policy.</p></footer>
</body></html>"""


def test_html_main_content_without_chrome() -> None:
    doc = load_document(HTML_PAGE, fmt="html", doc_id="h", source="https://x.org/gb.html")
    assert doc.title == "Gradient Boosting Guide"
    assert "each one fitted to the residual errors" in doc.text
    assert "## Key hyperparameters" in _headings(doc.text)
    assert "Parameter | Typical value\nlearning_rate | 0.05" in doc.text
    assert "GradientBoostingClassifier(learning_rate=0.05)" in doc.text
    for chrome in ("Sidebar link one", "Copyright 2024", "Privacy policy", "Blog"):
        assert chrome not in doc.text


def test_html_fallback_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *a, **k: None)
    doc = load_document(HTML_PAGE, fmt="html", doc_id="h", source="gb.html")
    assert "each one fitted to the residual errors" in normalize_for_match(doc.text)
    assert "Sidebar link one" not in doc.text and "Copyright 2024" not in doc.text
    assert "Parameter | Typical value" in doc.text


# --- PDF ----------------------------------------------------------------------------------
def _text_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal one-page PDF with real text objects (Helvetica), built by hand."""
    ops = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"]
    for line in lines:
        esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({esc}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for k, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % k + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    info = b" /Info %d 0 R" % len(objects) if title else b""
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, info, xref)
    )
    return out.getvalue()


def test_pdf_text_and_title() -> None:
    data = _text_pdf(
        [
            "Support vector machines find the maximum margin hyperplane between two",
            "classes of training points.",
            "",
            "Kernels map inputs into a richer feature space.",
        ],
        title="SVM Notes",
    )
    doc = load_document(data, fmt="pdf", doc_id="p", source="notes/svm.pdf")
    assert doc.title == "SVM Notes"
    assert doc.text.startswith("# SVM Notes\n\n")
    assert "maximum margin hyperplane between two classes of training points." in doc.text
    assert "Kernels map inputs into a richer feature space." in doc.text
    given = load_document(data, fmt="pdf", doc_id="p", source="svm.pdf", title="Given")
    assert given.text.startswith("# Given\n")


# --- the whole corpus ---------------------------------------------------------------------
def test_every_linked_file_and_the_page_load_clean(shared_corpus: Path) -> None:
    files = sorted(
        p
        for p in (shared_corpus / "linked").rglob("*")
        if p.is_file() and p.parent != shared_corpus / "linked"
    )
    assert len(files) == 95
    problems: list[str] = []
    sources = [(p, detect_format(p.name)) for p in files]
    if ML_PAGE.exists():
        sources.append((ML_PAGE, "webtext"))
    for path, fmt in sources:
        doc = load_document(path.read_bytes(), fmt=fmt, doc_id=path.name, source=path.name)
        assert doc.text.strip() and doc.title, path
        assert doc.metadata["format"] == fmt
        fence_lines = [ln for ln in doc.text.split("\n") if re.match(r"^`{3,}", ln)]
        if len(fence_lines) % 2:
            problems.append(f"{path.name}: unbalanced code fences")
        for line in _prose_lines(doc.text):
            for pattern in NOISE_PATTERNS:
                if re.search(pattern, line):
                    problems.append(f"{path.name}: {pattern!r} in {line[:100]!r}")
    assert not problems, "\n".join(problems[:40])


def test_loaders_never_crash_on_odd_input() -> None:
    """Any text in any format gives a Document or a SourceError, never another exception."""
    import random

    rnd = random.Random(7)
    alphabet = "ab #*`:|-=_.\n\t<>/{}[]()%!@'\"\\"
    samples = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 300))) for _ in range(60)]
    samples += [".. code-block::", "::\n\n", "+--+\n| a |\n", "===\n", "```", "graph TD", "a\nb\nc"]
    for sample in samples:
        for fmt in ("txt", "md", "mdx", "rst", "py", "html", "webtext"):
            try:
                doc = load_document(sample.encode(), fmt=fmt, doc_id="x", source="x")
            except SourceError:
                continue
            assert doc.text.strip()
