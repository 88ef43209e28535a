"""The VP-SDE of the paper (Eqs. 3-6) and its probability-flow ODE.

All functions take ``t`` as a tensor (any shape) and return tensors of the same
shape and dtype, so they broadcast against batches.
"""
from __future__ import annotations

import math

import torch

BETA_MIN = 0.1
BETA_MAX = 20.0
T_MIN = 1e-3
#: The paper's grid: t_k = linspace(t_min, 1, 1000)[k]; its spacing is exactly 1/1000.
GRID_STEPS = 1000
DT = 1.0 / GRID_STEPS


def beta(t: torch.Tensor) -> torch.Tensor:
    """beta(t) = beta_min + t (beta_max - beta_min)."""
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def m(t: torch.Tensor) -> torch.Tensor:
    """m(t) = t beta_min / 2 + t^2 (beta_max - beta_min) / 4 (Eq. 5); alpha = exp(-m)."""
    return 0.5 * t * BETA_MIN + 0.25 * t * t * (BETA_MAX - BETA_MIN)


def alpha(t: torch.Tensor) -> torch.Tensor:
    """Signal scale alpha(t) = exp(-m(t))."""
    return torch.exp(-m(t))


def v(t: torch.Tensor) -> torch.Tensor:
    """Noise variance v(t) = 1 - exp(-2 m(t)) (Eq. 6); -expm1 keeps it accurate at small t."""
    return -torch.expm1(-2.0 * m(t))


def sigma(t: torch.Tensor) -> torch.Tensor:
    """Noise standard deviation sigma_t = sqrt(v(t))."""
    return torch.sqrt(v(t))


def time_grid(t_min: float = T_MIN, steps: int = GRID_STEPS, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The first ``steps`` points of the paper's grid t_k = t_min + k / 1000, shape (steps,).

    For t_min = 1e-3 this is exactly ``linspace(t_min, 1, 1000)[:steps]``.
    """
    return t_min + DT * torch.arange(steps, dtype=dtype, device=device)


def drift(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """PF-ODE drift f(x, t) = -beta(t)/2 (x + s(x, t)) (Eq. 9 with dm = beta/2 dt).

    x, s: (B, ...); t: (B,).
    """
    b = beta(t).reshape(-1, *([1] * (x.dim() - 1)))
    return -0.5 * b * (x + s)


def drift_divergence(t: torch.Tensor, div_s: torch.Tensor, dim: int) -> torch.Tensor:
    """nabla . f = -beta/2 (D + nabla . s); t, div_s: (B,)."""
    return -0.5 * beta(t) * (dim + div_s)


def prior_logp(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) per sample, x: (B, ...) -> (B,)."""
    flat = x.reshape(x.shape[0], -1)
    d = flat.shape[1]
    return -0.5 * (flat * flat).sum(1) - 0.5 * d * math.log(2 * math.pi)


def continuous_to_discrete(t: torch.Tensor) -> torch.Tensor:
    """The 999 t time input of the paper's code and score_sde's continuous VP models."""
    return 999.0 * t
