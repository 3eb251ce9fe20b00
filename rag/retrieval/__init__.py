"""Retrievers by name: ``dense``, ``bm25``, ``hybrid``, and ``<name>+rerank``."""
