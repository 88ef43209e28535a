"""curate: find the training images a diffusion model will reproduce, and clean them.

The public surface is small; heavy modules (FiftyOne, plotting) load on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; imported lazily so `import curate` stays light.
_EXPORTS = {
    "track_volume_growth": "curate.volume",
    "VolumeGrowth": "curate.volume",
    "ExactScore": "curate.models.exact",
    "load_model": "curate.models.checkpoint",
    "save_checkpoint": "curate.models.checkpoint",
    "build_unet": "curate.models.unet",
    "train": "curate.train",
    "sample": "curate.sample",
    "compute_volume_growth": "curate.brain",
    "flag_high_risk": "curate.brain",
    "dedupe": "curate.brain",
    "export_clean": "curate.brain",
    "score_sharded": "curate.brain",
    "DatabaseUnavailableError": "curate.brain",
    "EpsNetAdapter": "curate.models.adapters",
    "DiffusersUNetAdapter": "curate.models.adapters",
    "find_memorized": "curate.memorization",
    "nearest_neighbors": "curate.memorization",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__():
    return __all__
