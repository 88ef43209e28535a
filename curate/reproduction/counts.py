"""Per-training-image reproduction counts and rates with 95 % intervals.

A generated sample copies at most one training image (its nearest), so over m
independent samples the copies of image i are Binomial(m, p_i): p_i is the probability
that one generated sample copies image i. The rate k_i / m estimates it; the interval
is **Wilson's score interval** (good coverage at small k, never outside [0, 1]).
"""
from __future__ import annotations

import torch

#: Two-sided 95 %: the standard normal's 0.975 quantile.
Z95 = 1.959963984540054


def counts_per_image(nearest_group: torch.Tensor, copy: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(n,) long: how many copying samples have each training image's group as nearest.

    nearest_group (m,) long, the group of each sample's nearest training image;
    copy (m,) bool; group (n,) long, each training image's group. Every member of a
    duplicate group gets the group's count (as :func:`curate.memorization.find_memorized`).
    """
    n_groups = int(group.max()) + 1 if group.numel() else 0
    per_group = torch.bincount(nearest_group[copy.bool()].to(torch.long), minlength=n_groups)
    return per_group.to(group.device)[group]


def wilson_interval(k, m: int, z: float = Z95) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson score interval for a binomial proportion: k successes (tensor) of m trials.

    centre = (k + z^2/2) / (m + z^2), half = z / (m + z^2) · sqrt(k (m - k) / m + z^2 / 4).
    Returns ``(low, high)`` float64, clipped to [0, 1].
    """
    if m < 1:
        raise ValueError(f"need at least one trial, got m = {m}")
    k = torch.as_tensor(k, dtype=torch.float64)
    if bool(((k < 0) | (k > m)).any()):
        raise ValueError(f"counts must lie in [0, {m}]")
    z2 = z * z
    centre = (k + z2 / 2) / (m + z2)
    half = z / (m + z2) * torch.sqrt(k * (m - k) / m + z2 / 4)
    # k = 0 and k = m have exact ends 0 and 1 (the formula leaves rounding residue there)
    low = torch.where(k == 0, torch.zeros_like(k), (centre - half).clamp(0, 1))
    high = torch.where(k == m, torch.ones_like(k), (centre + half).clamp(0, 1))
    return low, high


def rates(counts: torch.Tensor, m: int, z: float = Z95) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rate, low, high) float64 (n,): k / m and its Wilson interval."""
    k = torch.as_tensor(counts, dtype=torch.float64)
    low, high = wilson_interval(k, m, z)
    return k / m, low, high


def expected_copies(p: torch.Tensor, samples: int) -> torch.Tensor:
    """Expected copies of each image in ``samples`` generated samples: p · samples."""
    return torch.as_tensor(p, dtype=torch.float64) * samples


def total_interval(k_total: int, m: int, z: float = Z95) -> tuple[float, float, float]:
    """(share, low, high): the share of generated samples that copy *any* training image."""
    low, high = wilson_interval(torch.tensor(float(k_total)), m, z)
    return k_total / m, float(low), float(high)

