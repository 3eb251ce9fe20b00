"""Chunking: window budget, sections and headers, fences, ids, metadata."""

from __future__ import annotations

import pytest

from ingest.chunking import MIN_SECTION_TOKENS, chunk_document, split_sections
from rag.types import Document, make_chunk_id

WINDOW = 256


def _doc(
    text: str, *, title: str = "Guide", doc_id: str = "file:guide.md", **meta: object
) -> Document:
    metadata = {"topic": "testing", "format": "md", **meta}
    return Document(
        id=doc_id,
        source="guide.md",
        title=title,
        url="https://example.org/guide",
        text=text,
        metadata=metadata,
    )


def _paragraph(topic: str, n: int = 6) -> str:
    return " ".join(
        f"The {topic} method number {i} adjusts the learning rate, regularisation and batch size carefully."
        for i in range(n)
    )


LONG_DOC = "\n\n".join(
    [
        "# Guide",
        "An introduction to the guide. " + _paragraph("intro", 3),
        "## Optimisers",
        _paragraph("optimiser", 8),
        "### Adam",
        _paragraph("adam", 12),
        "```python\nimport torch\nopt = torch.optim.Adam(model.parameters(), lr=1e-3)\n\n# a comment line\nfor x in data:\n    opt.step()\n```",
        _paragraph("adam-follow-up", 4),
        "## Regularisation",
        _paragraph("dropout", 10),
    ]
)


def _chunks(
    embedder, text: str = LONG_DOC, chunk_tokens: int = 200, overlap: int = 32, **kw: object
):
    return chunk_document(
        _doc(text, **kw),
        embedder.tokenizer,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        max_tokens=embedder.max_tokens,
    )


def _tokens(embedder, text: str) -> int:
    return len(embedder.tokenizer.tokenize(text))


@pytest.mark.parametrize("chunk_tokens", [64, 200, 512])
def test_no_chunk_overflows_the_window(embedder, chunk_tokens: int) -> None:
    chunks = _chunks(embedder, chunk_tokens=chunk_tokens)
    assert len(chunks) > 3
    limit = min(chunk_tokens, embedder.max_tokens - 2)
    for chunk in chunks:
        # special tokens included, as the model sees it
        assert len(embedder.tokenizer.encode(chunk.indexed_text)) <= embedder.max_tokens
        assert _tokens(embedder, chunk.indexed_text) <= limit


def test_long_unbroken_line_is_split_by_tokens(embedder) -> None:
    # No whitespace, but punctuation makes it ~1,500 word pieces (a minified line, a path).
    blob = "".join(f"seg{i}/" for i in range(500))
    chunks = _chunks(embedder, f"# Data\n\nSome prose before the blob.\n\n{blob}")
    assert len(chunks) > 5
    for chunk in chunks:
        assert _tokens(embedder, chunk.indexed_text) <= 200
    joined = "".join(c.text for c in chunks if "Some prose" not in c.text)
    assert joined == blob  # cut at token boundaries, nothing lost or repeated


def test_sections_and_header(embedder) -> None:
    chunks = _chunks(embedder)
    sections = [c.section for c in chunks]
    # The document's H1 repeats its title, so it is dropped from the path.
    assert "Optimisers > Adam" in sections
    assert "Regularisation" in sections
    adam = next(c for c in chunks if c.section == "Optimisers > Adam")
    assert adam.header == "Guide > Optimisers > Adam"
    assert adam.indexed_text.startswith("Guide > Optimisers > Adam\n\n")
    assert "adam method" in adam.text
    assert all("dropout" not in c.text for c in chunks if c.section != "Regularisation")
    # Positions are 0..n-1 in document order.
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_headings_inside_fences_do_not_split_sections() -> None:
    text = "# Top\n\nintro\n\n```bash\n# not a heading\necho hi\n```\n\n## Next\n\nbody"
    sections = split_sections(text)
    assert [s.path for s in sections] == [["Top"], ["Top", "Next"]]
    assert "# not a heading" in sections[0].body


def test_fence_kept_whole_when_it_fits(embedder) -> None:
    chunks = _chunks(embedder)
    fenced = [c for c in chunks if "opt = torch.optim.Adam" in c.text]
    assert fenced, "the code block went missing"
    for chunk in fenced:
        assert "```python\nimport torch" in chunk.text
        assert "opt.step()\n```" in chunk.text
    for chunk in chunks:
        assert chunk.text.count("```") % 2 == 0, chunk.text


def test_oversized_fence_is_split_into_closed_fences(embedder) -> None:
    code = "\n".join(f"value_{i} = compute(value_{i - 1}, scale={i})" for i in range(1, 200))
    chunks = _chunks(embedder, f"# Code\n\nA long listing follows.\n\n```python\n{code}\n```\n")
    code_chunks = [c for c in chunks if "compute(" in c.text]
    assert len(code_chunks) > 2
    for chunk in code_chunks:
        assert chunk.text.count("```") % 2 == 0
        assert "```python" in chunk.text
        assert _tokens(embedder, chunk.indexed_text) <= 200


def test_tiny_sections_are_merged(embedder) -> None:
    text = "\n\n".join(
        [
            "# Guide",
            "## Part A",  # heading only: its child carries it in the path
            "### Details",
            _paragraph("details", 4),
            "### Tiny",
            "Just one line.",  # far below MIN_SECTION_TOKENS
            "## Part B",
            _paragraph("part-b", 4),
        ]
    )
    chunks = _chunks(embedder, text)
    assert all(c.section != "Part A" for c in chunks)
    assert all(c.section != "Part A > Tiny" for c in chunks)
    tiny_home = next(c for c in chunks if "Just one line." in c.text)
    assert tiny_home.section == "Part A > Details"
    assert "### Tiny" in tiny_home.text
    assert all(_tokens(embedder, c.text) >= MIN_SECTION_TOKENS // 3 for c in chunks)


def test_ids_deterministic_and_content_derived(embedder) -> None:
    first = _chunks(embedder)
    second = _chunks(embedder)
    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)
    assert first[0].id == make_chunk_id("file:guide.md", first[0].indexed_text, 0)
    # Editing one section changes only the chunks of that section.
    edited = _chunks(
        embedder, LONG_DOC.replace("dropout method number 3", "dropout method number three")
    )
    changed = {c.id for c in edited} ^ {c.id for c in first}
    assert changed
    assert all(c.section == "Regularisation" for c in first + edited if c.id in changed)
    # A renamed document title changes every header, so every id (the embedding changes).
    renamed = _chunks(embedder, title="Handbook")
    assert not {c.id for c in renamed} & {c.id for c in first}


def test_identical_texts_get_distinct_ids(embedder) -> None:
    para = _paragraph("repeat", 12)
    chunks = _chunks(embedder, f"# Sec\n\n{para}\n\n# Sec\n\n{para}", title="Doc")
    texts = [c.indexed_text for c in chunks]
    assert len(set(texts)) < len(texts)
    assert len({c.id for c in chunks}) == len(chunks)


def test_metadata(embedder) -> None:
    chunks = _chunks(embedder, license="BSD-3-Clause", nested={"a": 1}, title_source="given")
    meta = chunks[0].metadata
    assert meta["title"] == "Guide"
    assert meta["url"] == "https://example.org/guide"
    assert meta["source"] == "guide.md"
    assert meta["topic"] == "testing"
    assert meta["format"] == "md"
    assert meta["license"] == "BSD-3-Clause"
    assert meta["n_chunks"] == len(chunks)
    assert meta["doc_hash"] == _doc(LONG_DOC).hash
    assert "nested" not in meta  # only scalar document metadata is copied


def test_empty_document_gives_no_chunks(embedder) -> None:
    assert _chunks(embedder, "# Only a heading\n\n") == []


@pytest.mark.slow
def test_real_page_fits_window(embedder) -> None:
    from tests.conftest import ML_PAGE

    if not ML_PAGE.exists():
        pytest.skip("corpus page missing")
    doc = Document(
        id="file:machine-learning.txt",
        source="machine-learning.txt",
        title="Machine Learning",
        url="",
        text=ML_PAGE.read_text(),
    )
    chunks = chunk_document(
        doc, embedder.tokenizer, chunk_tokens=200, overlap=32, max_tokens=embedder.max_tokens
    )
    assert len(chunks) > 20
    assert max(_tokens(embedder, c.indexed_text) for c in chunks) <= 200


def test_lead_in_stays_with_its_fence(embedder) -> None:
    prose = _paragraph("context", 7)  # fills most of a chunk on its own
    text = f"# Setup\n\n{prose}\n\nInstall the package with:\n\n```bash\npip install mlrag\nmlrag ingest\n```\n\n{prose}"
    chunks = _chunks(embedder, text)
    home = next(c for c in chunks if "pip install mlrag" in c.text)
    assert "Install the package with:\n\n```bash" in home.text


def test_indented_fence_in_list_item_is_a_fence(embedder) -> None:
    # Unindented "# ..." lines inside the fence must not become headings.
    code = "\n".join(f"# note {i}\n    step_{i} = run({i})" for i in range(60))
    text = f"# Steps\n\n1. Run this:\n\n    ```python\n{code}\n    ```\n\n2. Then check the output."
    sections = split_sections(text)
    assert len(sections) == 1
    for chunk in _chunks(embedder, text):
        assert chunk.text.count("```") % 2 == 0, chunk.text
