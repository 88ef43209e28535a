"""The errors of loading a checkpoint or a model folder."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, truncated, inconsistent or mismatched."""


class PickleRefusedError(CheckpointError):
    """The file is a Python pickle; loading it could execute arbitrary code, so curate refuses."""
