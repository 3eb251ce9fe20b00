"""Generators by name: ``claude``, ``local``, ``extractive`` and ``auto``."""
