"""curate: find the training images a diffusion model will reproduce, and clean them.

``import curate`` holds the core, on image tensors: the volume-growth tracker, score
models and checkpoints, the SDE, training, sampling, memorization ground truth and the
errors they raise. The FiftyOne functions live in :mod:`curate.brain`; every risk score
in :mod:`curate.scores`. Modules load on first use, so ``import curate`` stays light
(FiftyOne is imported only by :mod:`curate.brain` and :mod:`curate.data`).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; imported lazily.
_EXPORTS = {
    "track_volume_growth": "curate.volume",
    "VolumeGrowth": "curate.volume",
    "NonFiniteError": "curate.volume",
    "VPSDE": "curate.sde",
    "ExactScore": "curate.models.exact",
    "EpsNetAdapter": "curate.models.adapters",
    "DiffusersUNetAdapter": "curate.models.adapters",
    "build_unet": "curate.models.unet",
    "load_model": "curate.models.checkpoint",
    "load_checkpoint": "curate.models.checkpoint",
    "save_checkpoint": "curate.models.checkpoint",
    "CheckpointError": "curate.models.checkpoint",
    "PickleRefusedError": "curate.models.checkpoint",
    "train": "curate.training",
    "sample": "curate.sampling",
    "find_memorized": "curate.memorization",
    "nearest_neighbors": "curate.memorization",
    "Memorization": "curate.memorization",
}
#: Sub-packages reachable as attributes (``curate.data.load_digits``) without an import.
_SUBMODULES = ("brain", "data", "evaluate", "models", "plots", "scores", "sde")

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups, and a later `import curate.<module>`, cannot shadow it
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"curate.{name}")
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__():
    return __all__ + list(_SUBMODULES)
