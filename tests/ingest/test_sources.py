"""Tests of the sources file parser and document ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.sources import SourceSpec, doc_id_for, load_sources, normalize_url
from rag.errors import ConfigError
from tests.conftest import LINKED, REPO_ROOT

SOURCES_TOML = REPO_ROOT / "corpus" / "sources.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_real_sources_file_has_the_page_and_every_manifest_url(shared_corpus: Path) -> None:
    specs = load_sources(SOURCES_TOML)
    assert len(specs) == 96
    page = specs[0]
    assert page == SourceSpec(
        kind="path",
        location="machine-learning.txt",
        title="Machine Learning",
        topic="machine-learning",
        format="webtext",
    )
    assert (SOURCES_TOML.parent / page.location).is_file()
    manifest = json.loads((LINKED / "MANIFEST.json").read_text(encoding="utf-8"))
    assert [s.location for s in specs[1:]] == [e["url"] for e in manifest]
    for spec, entry in zip(specs[1:], manifest, strict=True):
        assert spec.kind == "url"
        assert (spec.title, spec.topic) == (entry["title"], entry["topic"])
        assert spec.metadata == {"license": entry["license"]}
    ids = [doc_id_for(s.location, SOURCES_TOML.parent) for s in specs]
    assert len(set(ids)) == 96
    assert ids[0] == "file:machine-learning.txt"


def test_all_keys_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[source]]
url = "https://Example.org:443/docs/index.html#top"
title = "Docs"
topic = "demo"
format = "html"
depth = 2
license = "MIT"
repo = "o/r"
metadata = { owner = "team" }

[[source]]
path = "notes/a.md"
metadata = { url = "https://example.org/a" }
""",
    )
    url, local = load_sources(path)
    assert url == SourceSpec(
        kind="url",
        location="https://Example.org:443/docs/index.html#top",
        title="Docs",
        topic="demo",
        format="html",
        depth=2,
        metadata={"license": "MIT", "repo": "o/r", "owner": "team"},
    )
    assert local.kind == "path" and local.title is None and local.topic == ""
    assert local.metadata == {"url": "https://example.org/a"}


def test_empty_file_has_no_sources(tmp_path: Path) -> None:
    assert load_sources(write(tmp_path, "# nothing yet\n")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[source]]\npath = "a.txt\n', "not valid TOML"),
        ('[[source]]\npath = "a.txt"\ncolour = "red"\n', "unknown key(s) ['colour']"),
        ('[[source]]\ntitle = "No location"\n', "missing location"),
        ('[[source]]\npath = "a.txt"\nurl = "https://x.org/"\n', "not both"),
        ('[[source]]\nurl = "https://x.org/"\ndepth = -1\n', "depth must be a non-negative"),
        ('[[source]]\nurl = "https://x.org/"\ndepth = "2"\n', "depth must be a non-negative"),
        ('[[source]]\nurl = "https://x.org/"\ndepth = true\n', "depth must be a non-negative"),
        ('[[source]]\npath = "a.txt"\ndepth = 1\n', "depth only applies to url"),
        ('[[source]]\nurl = "ftp://x.org/file"\n', "absolute http(s) URL"),
        ('[[source]]\nurl = "/relative/page.html"\n', "absolute http(s) URL"),
        ('[[source]]\npath = ""\n', "'path' is empty"),
        ('[[source]]\npath = "https://x.org/a"\n', "looks like a URL"),
        ("[[source]]\npath = 3\n", "'path' must be a string"),
        ('[[source]]\npath = "a.txt"\nmetadata = { n = 1 }\n', "metadata.n must be a string"),
        ('title = "top"\n[[source]]\npath = "a.txt"\n', "unknown top-level key"),
        ('source = "a.txt"\n', "array of tables"),
    ],
)
def test_malformed_sources_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_toml_error_text_is_included(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2"):
        load_sources(write(tmp_path, '[[source]]\npath = "a.txt\n'))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('path = "a.txt"', 'path = "./a.txt"'),
        ('url = "https://x.org/a"', 'url = "HTTPS://X.org:443/a#part"'),
    ],
)
def test_duplicate_locations_raise(tmp_path: Path, first: str, second: str) -> None:
    path = write(tmp_path, f"[[source]]\n{first}\n\n[[source]]\n{second}\n")
    with pytest.raises(ConfigError, match=r"source #2: duplicate location .* source #1"):
        load_sources(path)


def test_missing_sources_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sources file not found"):
        load_sources(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Example.ORG:443/Path/Page.html#frag", "https://example.org/Path/Page.html"),
        ("http://example.org:80", "http://example.org/"),
        ("http://example.org:8080/a?b=1#c", "http://example.org:8080/a?b=1"),
        ("https://example.org:80/", "https://example.org:80/"),
        ("http://[::1]:8000/x", "http://[::1]:8000/x"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_doc_id_for_paths_and_urls(tmp_path: Path) -> None:
    assert doc_id_for("https://Example.org/a#b") == "url:https://example.org/a"
    assert doc_id_for("machine-learning.txt", tmp_path) == "file:machine-learning.txt"
    assert doc_id_for("./sub/../notes/a.md", tmp_path) == "file:notes/a.md"
    assert doc_id_for(str(tmp_path / "notes" / "a.md"), tmp_path) == "file:notes/a.md"
    outside = tmp_path.parent / "elsewhere.txt"
    assert doc_id_for(str(outside), tmp_path) == f"file:{outside.as_posix()}"
    spec = SourceSpec(kind="url", location="http://x.org")
    assert doc_id_for(spec) == "url:http://x.org/"
