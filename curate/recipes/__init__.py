"""Runnable recipes: ``python -m curate.recipes.<name> [--config PRESET] [--set k=v] [--dry-run]``.

Presets live in the repository's top-level ``recipes/<name>/`` folder as TOML files;
see :mod:`curate.recipes._config`.
"""
