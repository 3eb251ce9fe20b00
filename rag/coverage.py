"""Is the retrieved context about the question at all? The signals; rag.abstention decides.

Two signals tell whether the pipeline answers or says "not covered":

1. **Similarity.** Retrievers score on different scales (cosine, BM25, RRF, cross-encoder
   logits), so one scale serves all of them: the best cosine similarity between the query
   embedding and the stored embeddings of the hits, whichever retriever ranked them. It
   catches off-topic questions, but barely separates near-misses ("the learning rate schedule
   of YOLOv8") from answerable questions: the context is about learning rates either way.
2. **Specific-term coverage.** A near-miss names something the corpus does not contain. So a
   question term that is *specific* — written as a name (``DeepSpeed``, ``AWS``, ``YOLOv8``,
   ``XL``), a word the corpus writes as a name however it is typed (``claude``), or not an
   ordinary English word (``dask``, ``lightgbm``) — *and* rare in the corpus
   (in at most ``max_df`` chunks, counting its inflections) must occur in the retrieved
   context; when it does not, the context answers a different question. Ordinary words are
   left out because users paraphrase ("junk mail" for spam): a missing ordinary word says
   little. "Ordinary English word" means a whole word of the embedding model's tokenizer
   vocabulary (MiniLM: 30k word pieces learnt from Wikipedia and books), or an inflection,
   British spelling, negation or two-word compound of one.

rag.abstention abstains when the similarity is below ``settings.abstain_threshold`` or a rare
specific term is missing (``settings.abstain_term_max_df``); both were chosen on the gold dev
split (``mlrag eval calibrate``).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.shorthand import ABBREVIATIONS, FILLER_WORDS
from rag.types import Hit

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.lexical import LexicalIndex
    from rag.store import ChunkStore

# Words that carry no topic: English function words and the words questions are made of.
FUNCTION_WORDS: frozenset[str] = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the their then
    there these they this to was will with what which who whom whose when where why how does do
    did doing done were been being can could should would shall may might must i me my mine we
    our us you your yours he she his her it its them have has had having get gets got use used
    using uses make makes made want need needs like just also so than too very any some all each
    every more most much many few other same only own about after before between during through
    s t don doesn isn aren didn won way thing things stuff something anything here now still
    really actually please tell know""".split()  # noqa: SIM905 - a word list reads better as text
)
MIN_TYPO_LENGTH = 6  # shorter words are too often another real word one edit away (dask/task)
_WORD = re.compile(r"[A-Za-z0-9]+")
_PART = re.compile(r"[a-z0-9]+")  # the parts rag.lexical.tokenize splits identifiers into
# Suffix → replacement, longest first; British -ise spellings map onto the American -ize.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("isations", "ize"), ("izations", "ize"), ("isation", "ize"), ("ization", "ize"),
    ("ising", "ize"), ("izing", "ize"), ("ised", "ize"), ("ized", "ize"), ("ises", "ize"),
    ("izes", "ize"), ("ise", "ize"), ("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""),
    ("s", ""),
)  # fmt: skip
_NEGATIONS: tuple[str, ...] = ("non", "un")
MIN_BASE = 3  # shorter stems are ambiguous ("aws" is not the plural of "aw")
MIN_PREFIX = 5  # a term this long is also found as the start of a longer word


def word_base(word: str) -> str:
    """The inflection-free base of a lower-case word, so that "chopping" and "chop",
    "overfitting" and "overfit", "initialise" and "initialized" compare equal (a tiny
    stemmer: plural, -ed, -ing, -ise/-ize, doubled final consonant, final e)."""
    base = word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and not word.endswith("ss"):
            stem = word[: -len(suffix)] + replacement
            if len(stem) >= MIN_BASE:
                base = stem
            break
    if len(base) > MIN_BASE and base[-1] == base[-2] and base[-1] not in "aeiouls":
        base = base[:-1]  # chopp -> chop, overfitt -> overfit
    if len(base) > MIN_BASE and base.endswith("e"):
        base = base[:-1]  # use / used / uses -> us
    return base


@dataclass(frozen=True)
class QuestionTerm:
    """A content word of a question: lower-cased, its base, and whether it is written as a
    name (capitalised after the question's first word, as in Kafka; an upper-case letter
    after the first, as in DeepSpeed, AWS, XL; or letters mixed with digits, as in yolov8)."""

    word: str
    base: str
    name_like: bool


def _is_name_like(word: str, first: bool) -> bool:
    has_digit = any(c.isdigit() for c in word)
    has_alpha = any(c.isalpha() for c in word)
    capitalised = not first and word[:1].isupper()  # a proper noun mid-sentence: Kafka, Spark
    return capitalised or any(c.isupper() for c in word[1:]) or (has_digit and has_alpha)


def question_terms(question: str) -> list[QuestionTerm]:
    """The distinct content words of ``question`` (identifiers split into their parts, as
    the BM25 index splits them; function words, numbers, quantities such as 100k and single
    letters left out)."""
    terms: dict[str, QuestionTerm] = {}
    for position, raw in enumerate(_WORD.findall(question)):
        word = raw.lower()
        if len(word) < 2 or word[0].isdigit() or word in FUNCTION_WORDS or word in FILLER_WORDS:
            continue  # single letters, function words, filler, numbers and quantities (2018, 100k)
        name_like = _is_name_like(raw, first=position == 0)
        if word in terms:
            name_like = name_like or terms[word].name_like
        terms[word] = QuestionTerm(word, word_base(word), name_like)
    return list(terms.values())


def text_words(text: str) -> set[str]:
    """The lower-case alphanumeric words of ``text`` (identifiers split into parts)."""
    return set(_PART.findall(text.lower()))


# --- corpus and language statistics ------------------------------------------------------------
@dataclass(frozen=True)
class CorpusTerms:
    """How many chunks of the corpus contain each word base: the document frequencies of its
    forms summed (an upper bound where forms share a chunk; "rare" is all that matters)."""

    base_df: Mapping[str, int]
    n_docs: int
    names: frozenset[str] = frozenset()

    @classmethod
    def from_document_frequencies(
        cls, df: Mapping[str, int], n_docs: int, names: frozenset[str] = frozenset()
    ) -> CorpusTerms:
        """From per-token document frequencies; identifier tokens (``np.linalg``) are skipped,
        since their parts are counted on their own. ``names``: see :func:`corpus_names`."""
        base_df: dict[str, int] = {}
        for token, count in df.items():
            if _PART.fullmatch(token):
                base = word_base(token)
                base_df[base] = base_df.get(base, 0) + int(count)
        return cls(base_df, n_docs, names)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CorpusTerms:
        """Counted from the texts themselves (small stores, tests)."""
        df: dict[str, int] = {}
        n = 0
        kept = []
        for text in texts:
            n += 1
            kept.append(text)
            for word in text_words(text):
                df[word] = df.get(word, 0) + 1
        return cls.from_document_frequencies(df, n, corpus_names(kept))

    def df(self, word: str) -> int:
        """Chunks containing ``word`` or an inflection of it (summed over the forms)."""
        return self.base_df.get(word_base(word), 0)


# A capitalised word after a comma or a lower-case word ("GPT-4, Claude", "use Celery"), not
# at a sentence start or inside a title-case heading; and a lower-case word on its own, not a
# piece of an identifier or a path ("claude-3-5-sonnet", "celery.beat", "import pandas" counts).
_CAPITALISED_INSIDE = re.compile(r"(?:[,;]|\b[a-z][a-z0-9_]*) ([A-Z][a-z]{2,})\b")
_LOWER_ALONE = re.compile(r"(?<![\w\-./'\"])[a-z]{3,}(?![\w\-./'\"(])")
MAX_LOWER_SHARE = 0.1  # of a name's uses: a few slips of case still leave it a name


def corpus_names(texts: Iterable[str]) -> frozenset[str]:
    """The words the corpus writes as names (lower-cased): capitalised inside sentences, and
    written in lower case on their own in at most ``MAX_LOWER_SHARE`` of as many places
    ("Claude", "Kubeflow", "Gemini"; not "Celery", which is also the ``celery`` command). A
    user who types "claude" means the name, though the tokenizer knows it as a first name."""
    capitalised: dict[str, int] = {}
    lower: dict[str, int] = {}
    for text in texts:
        for match in _CAPITALISED_INSIDE.finditer(text):
            word = match.group(1).lower()
            capitalised[word] = capitalised.get(word, 0) + 1
        for word in _LOWER_ALONE.findall(text):
            lower[word] = lower.get(word, 0) + 1
    return frozenset(w for w, n in capitalised.items() if lower.get(w, 0) <= MAX_LOWER_SHARE * n)


_corpus_cache: dict[int, tuple[str, CorpusTerms]] = {}
_ordinary_cache: dict[str, frozenset[str]] = {}
_cache_lock = threading.Lock()


def corpus_terms(index: LexicalIndex) -> CorpusTerms:
    """The corpus statistics of a BM25 index, computed once per corpus version."""
    index.ensure_fresh()
    version = index.version
    with _cache_lock:
        cached = _corpus_cache.get(id(index))
    if cached is not None and cached[0] == version:
        return cached[1]
    df, n_docs = index.document_frequencies()
    names = corpus_names(chunk.text for chunk in index.chunks())
    terms = CorpusTerms.from_document_frequencies(df, n_docs, names)
    with _cache_lock:
        _corpus_cache[id(index)] = (version, terms)
    return terms


def vocabulary_words(vocab: Iterable[str]) -> frozenset[str]:
    """The whole alphabetic words of a tokenizer vocabulary (WordPiece continuations such
    as ``##ing``, special tokens and fragments of other alphabets left out; SentencePiece
    and byte-level BPE word-start markers removed)."""
    words = set()
    for piece in vocab:
        if piece.startswith("##"):
            continue
        word = piece.lstrip("▁Ġ").lower()
        if len(word) >= 2 and word.isascii() and word.isalpha():
            words.add(word)
    return frozenset(words)


def ordinary_words(embedder: Embedder) -> frozenset[str]:
    """The ordinary English words according to the embedding model's tokenizer."""
    with _cache_lock:
        cached = _ordinary_cache.get(embedder.model_name)
    if cached is None:
        cached = vocabulary_words(embedder.tokenizer.get_vocab())
        with _cache_lock:
            _ordinary_cache[embedder.model_name] = cached
    return cached


# "-able"/"-ible" adjectives and their "-ity" nouns, which the tokenizer's vocabulary splits
# into pieces: "reproducibility" -> "reproducible" -> "reproduc(e)", "usability" -> "us(e)".
_ADJECTIVE_ENDINGS: tuple[tuple[str, str], ...] = (
    ("ibility", "ible"), ("ability", "able"), ("ible", ""), ("able", ""),
)  # fmt: skip


def _adjective_stems(word: str) -> list[str]:
    """The words ``word`` derives from by an "-able"/"-ible" ending (outermost first)."""
    stems = []
    for ending, replacement in _ADJECTIVE_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            word = word[: -len(ending)] + replacement
            stems.append(word)
    return stems


def is_ordinary(word: str, vocabulary: frozenset[str]) -> bool:
    """Whether ``word`` is an ordinary word: in ``vocabulary``, or an inflection, negation
    ("unimportant"), "-able"/"-ible" derivation ("reproducibility") or two-word compound
    ("chatbot") of words in it."""

    def known(w: str) -> bool:
        base = word_base(w)
        return w in vocabulary or base in vocabulary or base + "e" in vocabulary

    if known(word) or any(known(stem) for stem in _adjective_stems(word)):
        return True
    for prefix in _NEGATIONS:
        if word.startswith(prefix) and len(word) - len(prefix) >= 4 and known(word[len(prefix) :]):
            return True
    return any(
        known(word[:i]) and known(word[i:]) for i in range(MIN_BASE, len(word) - MIN_BASE + 1)
    )


# --- the signal ----------------------------------------------------------------------------------
def stored_embeddings(store: ChunkStore, ids: list[str]) -> dict[str, np.ndarray]:
    """The stored (unit) embeddings of the given chunk ids; missing ids are absent."""
    if not ids:
        return {}
    page = store.collection.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
    embeddings = page.get("embeddings")
    if embeddings is None:
        return {}
    return {
        cid: np.asarray(vec, dtype=np.float32)
        for cid, vec in zip(page["ids"], embeddings, strict=True)
    }


def best_similarity(query_vector: np.ndarray, hits: list[Hit], store: ChunkStore) -> float:
    """Highest cosine similarity between the query and any hit's stored embedding
    (-1.0 when there are no hits or none is stored)."""
    vectors = stored_embeddings(store, [h.chunk.id for h in hits])
    if not vectors:
        return -1.0
    matrix = np.stack(list(vectors.values()))
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(query_vector)) or 1.0)
    sims = (matrix @ query_vector) / np.where(norms == 0, 1.0, norms)
    return float(np.max(sims))


def uncovered_specific_terms(
    question: str, hits: Sequence[Hit], corpus: CorpusTerms, vocabulary: frozenset[str]
) -> list[tuple[str, int]]:
    """The question's specific terms (see the module docstring) that no hit contains, even
    inflected, each with its corpus document frequency."""
    words, joined, bases = _hit_words(hits)
    uncovered = []
    for term in question_terms(question):
        if not term.name_like and term.word in corpus.names:
            term = dataclasses.replace(term, name_like=True)  # "claude" typed for Claude
        if _names(term, words, joined, bases):
            continue
        if any(long in words for long in ABBREVIATIONS.get(term.word, ())):
            continue  # "params" for "parameters", "np" for "numpy"
        if not term.name_like and _abbreviates_any(term.word, words):
            continue  # "thm" for "theorem", "xgb" for "xgboost"
        letters = _LETTERS_THEN_DIGITS.fullmatch(term.word)
        if letters is not None and letters.group(1) in words:
            continue  # "gpt3" typed for "GPT-3", "bert2" for "BERT 2"
        if not term.name_like and _is_typo_of_any(term.word, words):
            continue  # "sigmoud", "pytroch": one slip away from a word the context has
        if term.name_like or not is_ordinary(term.word, vocabulary):
            uncovered.append((term.word, corpus.df(term.word)))
    return uncovered


def _hit_words(hits: Sequence[Hit]) -> tuple[set[str], set[str], set[str]]:
    """The words of the hits (identifiers split), neighbouring words run together ("batch
    norm" -> "batchnorm"), and the words' bases."""
    words: set[str] = set()
    joined: set[str] = set()
    for hit in hits:
        sequence = _PART.findall(hit.chunk.indexed_text.lower())
        words.update(sequence)
        joined.update(a + b for a, b in zip(sequence, sequence[1:], strict=False))
    return words, joined, {word_base(w) for w in words}


def _names(term: QuestionTerm, words: set[str], joined: set[str], bases: set[str]) -> bool:
    """Whether the words name ``term`` as written: the word, an inflection, or the start of a
    longer word (BatchNorm in "BatchNorm2d" or "Batch Normalization")."""
    if term.word in words or term.base in bases:
        return True
    return len(term.word) >= MIN_PREFIX and any(w.startswith(term.word) for w in words | joined)


def uncovered_in_cited(
    question: str,
    cited: Sequence[Hit],
    hits: Sequence[Hit],
    corpus: CorpusTerms,
    vocabulary: frozenset[str],
) -> list[tuple[str, int]]:
    """The question's specific terms that the ``hits`` name as written but no ``cited`` block
    covers: the context has the thing asked about, the answer's sources do not. A term the
    hits match only loosely (a typo such as "problm", shorthand) is left to the retrieval rule:
    the cited block of a right answer need not contain the word the typo stands for."""
    words, joined, bases = _hit_words(hits)
    named = {t.word for t in question_terms(question) if _names(t, words, joined, bases)}
    return [
        (word, df)
        for word, df in uncovered_specific_terms(question, cited, corpus, vocabulary)
        if word in named
    ]


_LETTERS_THEN_DIGITS = re.compile(r"([a-z]{3,})\d+")


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one insertion, deletion, substitution or swap of two
    neighbouring letters."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


MAX_ABBREVIATION = 3  # "thm", "xgb"; a longer unknown word is more likely a name (dask)


def _abbreviates_any(word: str, words: set[str]) -> bool:
    """Whether ``word`` (at most three letters) is a subsequence of a longer context word that
    starts with the same letter: typed shorthand for it."""
    if not (2 <= len(word) <= MAX_ABBREVIATION and word.isalpha()):
        return False

    def inside(long: str) -> bool:
        letters = iter(long)
        return all(c in letters for c in word)

    return any(w[0] == word[0] and len(w) > len(word) + 2 and inside(w) for w in words)


def _is_typo_of_any(word: str, words: set[str]) -> bool:
    """Whether ``word`` (long enough not to be a different short word) is one edit away from
    a word of the context."""
    return len(word) >= MIN_TYPO_LENGTH and any(
        abs(len(w) - len(word)) <= 1 and one_edit_apart(word, w) for w in words
    )


@dataclass(frozen=True)
class CoverageSignal:
    """What the abstention decision looks at: the best query-to-hit cosine similarity and
    the specific question terms the hits lack (with their corpus document frequencies)."""

    similarity: float
    uncovered: tuple[tuple[str, int], ...] = ()

    def missing_terms(self, max_df: int) -> list[str]:
        """Uncovered specific terms found in at most ``max_df`` chunks of the corpus."""
        return [word for word, df in self.uncovered if df <= max_df]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (eval records, logs)."""
        return {"similarity": self.similarity, "uncovered": [list(u) for u in self.uncovered]}


def coverage_signal(
    question: str,
    query_vector: np.ndarray,
    hits: list[Hit],
    store: ChunkStore,
    corpus: CorpusTerms,
    vocabulary: frozenset[str],
) -> CoverageSignal:
    """Both relevance signals of ``hits`` for ``question`` (similarity -1.0 without hits)."""
    if not hits:
        return CoverageSignal(-1.0)
    similarity = best_similarity(query_vector, hits, store)
    uncovered = uncovered_specific_terms(question, hits, corpus, vocabulary)
    return CoverageSignal(similarity, tuple(uncovered))
