"""Counter-based random numbers keyed by each image.

A score must depend only on the image, the settings and the seed, never on the
batch it was computed in or the device. So every random draw is a pure function
of (image key, stream, index): a splitmix64 hash evaluated with int64 tensor ops,
identical on CPU and CUDA, with no generator state to carry between batches.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _s64(u: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch stores."""
    u &= _MASK64
    return u - (1 << 64) if u >= 1 << 63 else u


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_M1 = _s64(0xBF58476D1CE4E5B9)
_M2 = _s64(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (wrapping arithmetic)."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def image_keys(images: torch.Tensor, seed: int) -> torch.Tensor:
    """One int64 key per image (B,) from its pixels (rounded to float32) and ``seed``.

    Rounding to float32 first makes a float64 copy of a float32 image get the same key.
    """
    flat = images.detach().reshape(images.shape[0], -1).to("cpu", torch.float32).contiguous().numpy()
    salt = int(seed).to_bytes(8, "little", signed=True)
    keys = []
    for row in flat:
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, salt=salt[:8].ljust(16, b"\0")).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return torch.tensor(np.array(keys, dtype=np.int64))


def _bits(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """(B, count) hashed int64 words for counters (stream, 0..count-1)."""
    idx = torch.arange(count, dtype=torch.int64, device=keys.device) + (int(stream) * count)
    base = mix64(keys.reshape(-1, 1) + _s64(int(stream) * 0xD1B54A32D192ED03))
    return mix64(base + mix64(idx * _GOLDEN).reshape(1, -1))


def uniform(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """(B, count) float64 uniforms in the open interval (0, 1)."""
    top53 = _shr(_bits(keys, stream, count), 11).to(torch.float64)
    return (top53 + 0.5) * 2.0**-53


def normal(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """(B, count) float64 standard normals (Box-Muller on two hashed uniforms each)."""
    u = uniform(keys, stream, 2 * count).reshape(keys.shape[0], count, 2)
    return torch.sqrt(-2.0 * torch.log(u[..., 0])) * torch.cos(2.0 * math.pi * u[..., 1])


def rademacher(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """(B, count) float64 signs +-1, equally likely."""
    bit = _shr(_bits(keys, stream, count), 63)
    return 1.0 - 2.0 * bit.to(torch.float64)


def image_seed(image: torch.Tensor, seed: int) -> int:
    """A 63-bit seed from one image's float32 bytes (C, H, W) and a run seed (batch independent)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def image_noise(images: torch.Tensor, seed: int, draws: int) -> torch.Tensor:
    """Standard normal noise (B, draws, C, H, W) float32 on the CPU, each image's from a
    generator seeded by :func:`image_seed`: the same whatever batch the image is in."""
    return torch.stack([
        torch.randn((draws, *img.shape), generator=torch.Generator().manual_seed(image_seed(img, seed)),
                    dtype=torch.float32)
        for img in images
    ])


def mix_ints(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 over them, with :func:`mix64`), so nearby
    inputs give unrelated generator streams."""
    h = torch.tensor(_GOLDEN, dtype=torch.int64)
    for v in values:
        h = mix64((h ^ _s64(int(v))) + _GOLDEN)
    return int(h) & ((1 << 63) - 1)
