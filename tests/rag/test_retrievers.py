"""Dense, BM25, hybrid and MMR retrievers, filters, source boost and the registry, over a
small real store (real MiniLM embeddings in a temporary Chroma)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import EmptyIndexError, InvalidInputError, ModelUnavailableError, UnknownNameError
from rag.lexical import LexicalIndex, lexical_index_dir
from rag.retrieval.base import Retriever
from rag.retrieval.filters import normalize_filters, to_chroma_where
from rag.retrieval.hybrid import candidate_depth, rrf_fuse
from rag.retrieval.mmr import mmr_order, scaled_relevance
from rag.retrieval.registry import (
    RETRIEVER_NAMES,
    RetrievalContext,
    build_retriever,
    validate_k,
)
from rag.store import ChunkStore, corpus_version_of
from rag.types import Chunk, make_chunk_id

# (doc, title, topic, section, text): short, realistic passages with distinct vocabulary.
DOCS: list[tuple[str, str, str, str, str]] = [
    (
        "ml-page",
        "Machine learning",
        "machine-learning",
        "Evaluation > Imbalanced data",
        "For fraud detection with very few positives, PR-AUC is more informative than ROC-AUC: "
        "precision-recall curves ignore the many true negatives that inflate ROC-AUC.",
    ),
    (
        "ml-page",
        "Machine learning",
        "machine-learning",
        "Fine-tuning > LoRA",
        "LoRA freezes the pretrained weights and learns two low-rank matrices per layer; the rank r "
        "controls the number of trainable parameters, and r=8 or r=16 is a common choice.",
    ),
    (
        "ml-page",
        "Machine learning",
        "machine-learning",
        "Overfitting",
        "Overfitting means a model memorises noise in the training set. Regularisation, early "
        "stopping and more data reduce the gap between training and validation loss.",
    ),
    (
        "numpy-linalg",
        "numpy.linalg",
        "numpy",
        "Eigenvalues",
        "np.linalg.eig computes the eigenvalues and right eigenvectors of a square array. For "
        "symmetric matrices use np.linalg.eigh, which is faster and returns sorted eigenvalues.",
    ),
    (
        "numpy-linalg",
        "numpy.linalg",
        "numpy",
        "Solving",
        "np.linalg.solve solves a linear matrix equation ax = b exactly for a well-determined, "
        "full-rank coefficient matrix; use lstsq for least-squares solutions.",
    ),
    (
        "numpy-basics",
        "NumPy quickstart",
        "numpy",
        "Broadcasting",
        "Broadcasting lets NumPy operate on arrays of different shapes by virtually stretching "
        "dimensions of size one, without copying data.",
    ),
    (
        "sklearn-pre",
        "Preprocessing data",
        "scikit-learn",
        "Standardization",
        "StandardScaler removes the mean and scales to unit variance. Call fit_transform on the "
        "training data and transform on the test data to avoid leaking statistics.",
    ),
    (
        "sklearn-pre",
        "Preprocessing data",
        "scikit-learn",
        "Encoding categorical features",
        "OneHotEncoder turns categorical features into one binary column per category; set "
        "handle_unknown='ignore' to survive categories unseen during fit.",
    ),
    (
        "sklearn-cv",
        "Cross-validation",
        "scikit-learn",
        "K-fold",
        "cross_val_score splits the data into k folds, trains on k-1 of them and scores on the "
        "held-out fold; StratifiedKFold keeps class proportions in each fold.",
    ),
    (
        "sklearn-ens",
        "Ensemble methods",
        "scikit-learn",
        "Gradient boosting",
        "Gradient boosting builds an additive model of shallow decision trees, each fitted to the "
        "residual errors of the previous ones; HistGradientBoostingClassifier is fast on big data.",
    ),
    (
        "torch-autograd",
        "Autograd mechanics",
        "pytorch",
        "Backward",
        "loss.backward() accumulates gradients into the .grad attribute of every leaf tensor with "
        "requires_grad=True; call optimizer.zero_grad() before each step.",
    ),
    (
        "torch-data",
        "Datasets & DataLoaders",
        "pytorch",
        "DataLoader",
        "torch.utils.data.DataLoader wraps a Dataset and yields mini-batches; num_workers loads "
        "batches in parallel and pin_memory speeds up host-to-GPU copies.",
    ),
    (
        "torch-amp",
        "Automatic mixed precision",
        "pytorch",
        "GradScaler",
        "torch.amp.autocast runs eligible operations in float16 or bfloat16; GradScaler scales the "
        "loss to keep small float16 gradients from underflowing to zero.",
    ),
    (
        "torch-save",
        "Saving and loading models",
        "pytorch",
        "state_dict",
        "Save a model's state_dict with torch.save and restore it with load_state_dict; call "
        "model.eval() before inference so dropout and batch norm behave deterministically.",
    ),
    (
        "peft-docs",
        "PEFT",
        "huggingface",
        "LoraConfig",
        "LoraConfig(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj']) configures LoRA "
        "adapters; get_peft_model wraps the base model so only the adapters are trained.",
    ),
    (
        "bm25-notes",
        "Search notes",
        "machine-learning",
        "BM25",
        "BM25 scores documents by term frequency, saturated by k1, and inverse document frequency, "
        "with length normalisation controlled by b.",
    ),
]


def make_chunks() -> list[Chunk]:
    """The test corpus as chunks with title/url/source/topic metadata."""
    chunks = []
    positions: dict[str, int] = {}
    for doc_id, title, topic, section, text in DOCS:
        position = positions.get(doc_id, 0)
        positions[doc_id] = position + 1
        chunks.append(
            Chunk(
                id=make_chunk_id(doc_id, text),
                doc_id=doc_id,
                text=text,
                section=section,
                position=position,
                metadata={
                    "title": title,
                    "url": f"https://docs.example/{doc_id}",
                    "source": f"https://docs.example/{doc_id}",
                    "topic": topic,
                },
            )
        )
    return chunks


_EMBEDDINGS: dict[str, np.ndarray] = {}  # indexed text -> vector, shared by every test


def fill_store(store: ChunkStore, embedder, chunks: list[Chunk]) -> None:
    """Upsert ``chunks`` with real embeddings and record the corpus version."""
    missing = [c.indexed_text for c in chunks if c.indexed_text not in _EMBEDDINGS]
    _EMBEDDINGS.update(zip(missing, embedder.embed_documents(missing), strict=True))
    store.upsert(chunks, np.stack([_EMBEDDINGS[c.indexed_text] for c in chunks]))
    store.set_corpus_version(corpus_version_of(store.all_ids()))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Settings, RetrievalContext]:
    """Settings and a retrieval context over a store holding :func:`make_chunks`."""
    # No topic prior: these tests check raw scores and orders (the boost has its own test).
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("retrieval") / "data", torch_threads=1, source_boost={}
    )
    store = ChunkStore.from_settings(settings, embedder)
    fill_store(store, embedder, make_chunks())
    return settings, RetrievalContext(settings=settings, embedder=embedder, store=store)


def _ctx(filled: tuple[Settings, RetrievalContext], **overrides) -> RetrievalContext:
    """A context sharing the filled store (and its lexical index) with other settings."""
    settings, ctx = filled
    return RetrievalContext(
        settings=settings.model_copy(update=overrides),
        embedder=ctx.embedder,
        store=ctx.store,
        lexical=ctx.lexical_index(),
    )


def _check_hits(hits, name: str, k: int) -> None:
    assert 0 < len(hits) <= k
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(h.retriever == name for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


# --- dense -----------------------------------------------------------------------------------
def test_dense_scores_are_cosine_similarities(filled, embedder) -> None:
    retriever = build_retriever("dense", _ctx(filled))
    assert isinstance(retriever, Retriever)
    query = "how do I get eigenvalues of a matrix in numpy"
    hits = retriever.search(query, 4)
    _check_hits(hits, "dense", 4)
    assert hits[0].chunk.doc_id == "numpy-linalg" and "eig" in hits[0].chunk.text
    q = embedder.embed_query(query)
    for hit in hits:
        expected = float(q @ embedder.embed_documents([hit.chunk.indexed_text])[0])
        assert hit.score == pytest.approx(expected, abs=1e-4)


def test_dense_semantic_match_without_shared_words(filled) -> None:
    hits = build_retriever("dense", _ctx(filled)).search(
        "my network memorises the training examples", 3
    )
    assert hits[0].chunk.section == "Overfitting"


# --- bm25 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected_section"),
    [
        ("np.linalg.eig", "Eigenvalues"),
        ("fit_transform", "Standardization"),
        ("PR-AUC", "Evaluation > Imbalanced data"),
        ("GradScaler underflow", "GradScaler"),
    ],
)
def test_bm25_matches_identifiers(filled, query: str, expected_section: str) -> None:
    hits = build_retriever("bm25", _ctx(filled)).search(query, 3)
    _check_hits(hits, "bm25", 3)
    assert hits[0].chunk.section == expected_section


def test_bm25_returns_only_chunks_sharing_a_term(filled) -> None:
    hits = build_retriever("bm25", _ctx(filled)).search("eigh", 10)
    assert [h.chunk.section for h in hits] == ["Eigenvalues"]
    assert build_retriever("bm25", _ctx(filled)).search("the of and", 10) == []


# --- hybrid ----------------------------------------------------------------------------------
def test_rrf_fuse_weights_ranks() -> None:
    a, b, c = (Chunk(id=x, doc_id="d", text=x) for x in "abc")
    fused = rrf_fuse([[a, b], [b, c]], weights=(1.0, 2.0), rrf_k=10)
    scores = {chunk.id: score for chunk, score in fused}
    assert scores["a"] == pytest.approx(1 / 11)
    assert scores["b"] == pytest.approx(1 / 12 + 2 / 11)
    assert scores["c"] == pytest.approx(2 / 12)
    assert [chunk.id for chunk, _ in fused] == ["b", "c", "a"]


def test_hybrid_score_is_weighted_rrf_of_dense_and_bm25(filled) -> None:
    ctx = _ctx(filled, hybrid_weights=(0.7, 1.3), rrf_k=20)
    query = "LoRA rank r trainable parameters"
    hits = build_retriever("hybrid", ctx).search(query, 5)
    _check_hits(hits, "hybrid", 5)
    depth = candidate_depth(5, ctx.settings.hybrid_candidates)
    dense = [h.chunk.id for h in build_retriever("dense", ctx).search(query, depth)]
    lexical = [h.chunk.id for h in build_retriever("bm25", ctx).search(query, depth)]
    for hit in hits:
        expected = 0.0
        if hit.chunk.id in dense:
            expected += 0.7 / (20 + dense.index(hit.chunk.id) + 1)
        if hit.chunk.id in lexical:
            expected += 1.3 / (20 + lexical.index(hit.chunk.id) + 1)
        assert hit.score == pytest.approx(expected)
    assert hits[0].chunk.section in ("Fine-tuning > LoRA", "LoraConfig")


def test_candidate_depth_is_fixed_until_four_times_k_exceeds_it() -> None:
    assert candidate_depth(1, 100) == candidate_depth(25, 100) == 100
    assert candidate_depth(30, 100) == 120


@pytest.mark.parametrize("query", ["LoRA rank r trainable parameters", "mixed precision"])
def test_hybrid_hits_for_a_smaller_k_are_a_prefix_of_a_larger_k(filled, query: str) -> None:
    """The candidate depth does not grow with k (up to 4·k), so asking for fewer hits never
    changes which hits come first."""
    retriever = build_retriever("hybrid", _ctx(filled, hybrid_candidates=8))
    assert retriever.depth == 8
    ids = [[h.chunk.id for h in retriever.search(query, k)] for k in (1, 2)]
    assert ids[1][:1] == ids[0]


# --- filters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        ({"topic": "pytorch"}, lambda c: c.topic == "pytorch"),
        ({"topic": ["numpy", "scikit-learn"]}, lambda c: c.topic in ("numpy", "scikit-learn")),
        ({"source": "https://docs.example/numpy-linalg"}, lambda c: c.doc_id == "numpy-linalg"),
        (
            {"doc_id": ["sklearn-pre", "torch-amp"]},
            lambda c: c.doc_id in ("sklearn-pre", "torch-amp"),
        ),
        ({"topic": "numpy", "doc_id": "numpy-basics"}, lambda c: c.doc_id == "numpy-basics"),
    ],
)
def test_filters_apply_to_every_retriever(filled, name: str, filters, allowed) -> None:
    # A query whose best matches (LoRA, eigenvalues, mixed precision) mostly lie outside the filter.
    hits = build_retriever(name, _ctx(filled)).search(
        "LoRA rank matrix eigenvalues float16 data", 10, filters
    )
    assert hits, "every filter in this table matches something the query mentions"
    assert all(allowed(h.chunk) for h in hits)


@pytest.mark.parametrize("name", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize("filters", [{"language": "en"}, {"topic": 3}, {"topic": []}])
def test_bad_filters_are_rejected(filled, name: str, filters) -> None:
    with pytest.raises(InvalidInputError):
        build_retriever(name, _ctx(filled)).search("anything", 3, filters)


def test_chroma_where_shapes() -> None:
    assert to_chroma_where(normalize_filters({"topic": "numpy"})) == {"topic": "numpy"}
    assert to_chroma_where(normalize_filters({"topic": ["a", "b"]})) == {
        "topic": {"$in": ["a", "b"]}
    }
    assert to_chroma_where(normalize_filters({"topic": "a", "source": "s"})) == {
        "$and": [{"topic": "a"}, {"source": "s"}]
    }
    assert to_chroma_where(normalize_filters({})) is None


# --- source boost ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dense", "hybrid"])
def test_source_boost_promotes_a_topic(filled, name: str) -> None:
    query = "LoRA adapters configuration"
    plain = build_retriever(name, _ctx(filled)).search(query, 3)
    assert plain[0].chunk.topic != "pytorch"
    boosted = build_retriever(name, _ctx(filled, source_boost={"pytorch": 50.0})).search(query, 3)
    assert boosted[0].chunk.topic == "pytorch"
    assert [h.score for h in boosted] == sorted((h.score for h in boosted), reverse=True)


def test_source_boost_default_favours_the_users_page() -> None:
    assert Settings().source_boost == {"machine-learning": 2.0}


# --- MMR -------------------------------------------------------------------------------------
def test_mmr_order_skips_near_duplicates() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    relevance = np.array([1.0, 0.95, 0.6])
    assert mmr_order(relevance, vectors, 3, lambda_=1.0) == [0, 1, 2]
    assert mmr_order(relevance, vectors, 2, lambda_=0.5) == [0, 2]
    assert scaled_relevance([2.0, 1.0, 0.0]).tolist() == [1.0, 0.5, 0.0]


def test_mmr_retriever_diversifies(filled, embedder) -> None:
    settings, ctx = filled
    dup_settings = settings.model_copy(
        update={"data_dir": settings.data_dir.parent / "mmr", "collection": "mmr"}
    )
    store = ChunkStore.from_settings(dup_settings, embedder)
    base = make_chunks()
    lora = next(c for c in base if c.section == "Fine-tuning > LoRA")
    twin = Chunk(
        id=lora.id + "-copy",
        doc_id="mirror",
        text=lora.text,
        section=lora.section,
        metadata=lora.metadata,
    )
    fill_store(store, embedder, [*base, twin])
    plain_ctx = RetrievalContext(settings=dup_settings, embedder=embedder, store=store)
    query = "LoRA low-rank matrices rank r"
    plain = build_retriever("dense", plain_ctx).search(query, 2)
    assert {h.chunk.text for h in plain} == {lora.text}  # the twins crowd out everything else
    mmr_ctx = RetrievalContext(
        settings=dup_settings.model_copy(update={"mmr_lambda": 0.5}), embedder=embedder, store=store
    )
    diverse = build_retriever("dense", mmr_ctx).search(query, 2)
    assert diverse[0].chunk.text == lora.text and diverse[1].chunk.text != lora.text
    assert [h.rank for h in diverse] == [1, 2] and all(h.retriever == "dense" for h in diverse)


# --- empty index & registry ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dense", "bm25", "hybrid"])
def test_empty_index_raises(settings: Settings, embedder, name: str) -> None:
    ctx = RetrievalContext(
        settings=settings, embedder=embedder, store=ChunkStore.from_settings(settings, embedder)
    )
    with pytest.raises(EmptyIndexError):
        build_retriever(name, ctx).search("anything", 3)


def test_unknown_retriever_lists_names(filled) -> None:
    with pytest.raises(UnknownNameError) as info:
        build_retriever("sparse", _ctx(filled))
    assert all(name in str(info.value) for name in RETRIEVER_NAMES)


@pytest.mark.parametrize("name", ["dense+rerank", "bm25+rerank", "hybrid+rerank"])
def test_rerank_without_model_explains_setting(filled, name: str) -> None:
    with pytest.raises(ModelUnavailableError, match="MLRAG_RERANKER_MODEL"):
        build_retriever(name, _ctx(filled))


def test_lexical_index_is_built_lazily(filled, embedder) -> None:
    settings, ctx = filled
    fresh = RetrievalContext(settings=settings, embedder=embedder, store=ctx.store)
    build_retriever("dense", fresh)
    assert fresh.lexical is None
    build_retriever("hybrid", fresh)
    assert isinstance(fresh.lexical, LexicalIndex) and len(fresh.lexical) == len(DOCS)
    assert Path(lexical_index_dir(settings), "CURRENT").exists()


def test_validate_k() -> None:
    settings = Settings(k=4, max_k=10)
    assert validate_k(None, settings) == 4
    assert validate_k(10, settings) == 10
    for bad in (0, -1, 11, True, 2.5, "3"):
        with pytest.raises(InvalidInputError):
            validate_k(bad, settings)  # type: ignore[arg-type]


def test_hybrid_finds_chunks_newer_than_its_lexical_index(tmp_path: Path, embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", torch_threads=1, source_boost={})
    store = ChunkStore.from_settings(settings, embedder)
    fill_store(store, embedder, make_chunks())
    index = LexicalIndex.load_or_build(store, tmp_path / "lex", freshness_interval_s=3600)
    ctx = RetrievalContext(settings=settings, embedder=embedder, store=store, lexical=index)
    newer = Chunk(
        id="new#1",
        doc_id="new",
        text="Label smoothing softens one-hot targets to reduce overconfidence.",
        metadata={"title": "Label smoothing", "topic": "pytorch"},
    )
    fill_store(store, embedder, [newer])  # the lexical index does not know it yet
    hits = build_retriever("hybrid", ctx).search("label smoothing overconfidence", 3)
    # Only the dense list has it (BM25 is stale), yet it comes back whole, from Chroma.
    assert newer in [h.chunk for h in hits]
