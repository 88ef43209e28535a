"""Data: image tensors for models and tests, and FiftyOne datasets for curators."""
from __future__ import annotations

import importlib

_EXPORTS = {
    "digits_images": "curate.data.tensors",
    "to_model_range": "curate.data.tensors",
    "from_model_range": "curate.data.tensors",
    "load_digits": "curate.data.datasets",
    "load_cifar10": "curate.data.datasets",
    "load_image_tree": "curate.data.datasets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'curate.data' has no attribute {name!r}")


def __dir__():
    return __all__
