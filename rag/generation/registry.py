"""Generators by name. ``claude``, ``openai`` and ``local`` are imported only when asked
for, so the extractive path never loads an LLM stack."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, UnknownNameError
from rag.generation.base import Generator
from rag.sentences import SentenceEmbeddings

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder

GENERATOR_NAMES: tuple[str, ...] = ("auto", "extractive", "local", "claude", "openai")
CONCRETE_GENERATORS: tuple[str, ...] = ("extractive", "local", "claude", "openai")


@dataclass
class SharedResources:
    """What generators share: the embedder, the sentence-embedding cache, and the local
    model manager (created on first use so only the ``local`` path pays for it)."""

    settings: Settings
    embedder: Embedder
    sentences: SentenceEmbeddings
    claude_client: Any | None = None  # an ``anthropic.Anthropic`` (tests pass a mocked one)
    openai_client: Any | None = None  # an ``openai.OpenAI`` for the inference server (tests)
    _local_manager: Any | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, settings: Settings, embedder: Embedder) -> SharedResources:
        """Resources for ``settings`` around an existing embedder."""
        return cls(settings=settings, embedder=embedder, sentences=SentenceEmbeddings(embedder))

    def local_manager(self) -> Any:
        """The :class:`rag.local_models.LocalModelManager` (cheap to create; the model loads
        on first generation)."""
        if self._local_manager is None:
            with self._lock:
                if self._local_manager is None:
                    from rag.local_models import LocalModelManager

                    self._local_manager = LocalModelManager(self.settings)
        return self._local_manager


def check_generator_name(name: str) -> str:
    """``name`` if it is a known generator, else UnknownNameError listing the valid names."""
    if name not in GENERATOR_NAMES:
        raise UnknownNameError(
            f"unknown generator {name!r}; choose one of: {', '.join(GENERATOR_NAMES)}"
        )
    return name


def resolve_generator_name(name: str, settings: Settings) -> str:
    """The concrete generator ``name`` stands for: ``auto`` is ``openai`` when an inference
    server is configured (``openai_base_url``), else ``claude`` when an Anthropic key is set,
    else ``settings.offline_generator`` (whose own ``auto`` is ``local`` when the capable
    Qwen2.5-Coder-1.5B GGUF is installed, else ``extractive``)."""
    check_generator_name(name)
    if name != "auto":
        return name
    if settings.openai_base_url:
        return "openai"
    if settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value():
        return "claude"
    offline = settings.offline_generator
    if offline not in ("auto", "extractive", "local"):
        raise ConfigError(
            f"offline_generator must be 'auto', 'extractive' or 'local', got {offline!r}"
        )
    if offline == "auto":
        from rag.model_files import QWEN_CODER_1_5B, installed_model

        installed = installed_model(QWEN_CODER_1_5B, settings.models_dir) is not None
        return "local" if installed else "extractive"
    return offline


def build_generator(name: str, settings: Settings, shared: SharedResources) -> Generator:
    """A new generator for ``name`` (``auto`` resolved first); callers cache it."""
    concrete = resolve_generator_name(name, settings)
    if concrete == "extractive":
        from rag.generation.extractive import ExtractiveGenerator

        return ExtractiveGenerator(settings.retrieval, shared.embedder, shared.sentences)
    if concrete == "claude":
        from rag.generation.claude import ClaudeGenerator

        return ClaudeGenerator(settings.generation, client=shared.claude_client)
    if concrete == "openai":
        from rag.generation.openai_server import OpenAIServerGenerator

        return OpenAIServerGenerator(settings.generation, client=shared.openai_client)
    from rag.generation.local import LocalGenerator

    return LocalGenerator(settings, manager=shared.local_manager())
