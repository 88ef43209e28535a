"""Image tensors in the model range [-1, 1]."""
from __future__ import annotations

import numpy as np
import torch


def to_model_range(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (..., H, W) in [0, 255] -> float32 in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images_uint8), dtype=torch.float32)
    return x / 127.5 - 1.0


def hwc_uint8_to_nchw(images_uint8: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 in [0, 255] -> (B, C, H, W) float32 in [-1, 1], in numpy (the
    descriptor's and the copy embedding's input; :func:`to_model_range` is the torch side)."""
    return np.asarray(images_uint8).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8 in [0, 255] (clipped, rounded)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def digits_images(*, dtype=torch.float32, return_labels: bool = False):
    """scikit-learn's 1,797 real 8x8 handwritten digits as (1797, 1, 8, 8) in [-1, 1].

    The raw values are integers 0..16; they map linearly to [-1, 1].
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float64).unsqueeze(1) / 8.0 - 1.0
    x = x.to(dtype)
    if return_labels:
        return x, torch.as_tensor(bunch.target, dtype=torch.long)
    return x
