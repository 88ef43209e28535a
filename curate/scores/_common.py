"""What the tensor-level score functions share: rows per network call, the input check
and the l_p norm of a difference."""
from __future__ import annotations

import torch

#: Images (network rows) per call when a score function chunks its work.
BATCH_SIZE = 256


def check_image_batch(images) -> None:
    """ValueError unless ``images`` is a non-empty (B, C, H, W) tensor."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty tensor (B, C, H, W), got "
                         f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")


def check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def lp_norm(d: torch.Tensor, p: float) -> torch.Tensor:
    """(sum_i |d_i|^p)^(1/p) over each row of d (B, ...) -> (B,), in d's dtype.

    Scaled by the row's largest entry first so that |d|^p neither overflows nor underflows.
    """
    flat = d.reshape(d.shape[0], -1).abs()
    peak = flat.amax(1, keepdim=True)
    scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    return scale.squeeze(1) * ((flat / scale) ** p).sum(1) ** (1.0 / p)
