"""Score models: the interface, the exact score, networks, adapters and checkpoints."""
from __future__ import annotations

import importlib

from curate.models.base import ScoreModel, check_model, drift, eps, score
from curate.models.exact import ExactScore

_LAZY = {
    "EpsNetAdapter": "curate.models.adapters",
    "DiffusersUNetAdapter": "curate.models.adapters",
    "load_model": "curate.models.checkpoint",
    "load_checkpoint": "curate.models.checkpoint",
    "save_checkpoint": "curate.models.checkpoint",
    "build_unet": "curate.models.unet",
    "fast_model": "curate.models.speed",
    "FastModel": "curate.models.speed",
}

__all__ = ["ScoreModel", "ExactScore", "check_model", "drift", "eps", "score", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'curate.models' has no attribute {name!r}")
