"""mlrag core: configuration, types, embeddings, store, retrieval, prompt and generation.

This package imports only third-party code; ``ingest``, ``api``, ``eval`` and ``finetune``
build on it, never the other way round.
"""

__version__ = "0.1.0"
