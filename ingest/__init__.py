"""Ingest pipeline: load sources, clean them to normalised Markdown, chunk and index them."""
