"""The VP-SDE of the paper (Eqs. 3-6) and its probability-flow ODE, as one object.

Every schedule fact lives here: beta_min, beta_max, t_min, the Euler grid of the paper's
Algorithm 1 and the time scale of the network's time input. :data:`VP` holds the paper's
values; a model that was trained with another schedule says so with an ``sde`` attribute,
and :func:`of` returns the SDE of any score model.

All methods take ``t`` as a tensor (any shape) and return tensors of the same shape and
dtype, so they broadcast against batches.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class VPSDE:
    """dx = -beta(t)/2 x dt + sqrt(beta(t)) dW on t in [t_min, 1].

    Attributes:
        beta_min, beta_max: the linear schedule beta(t) = beta_min + t (beta_max - beta_min).
        t_min: the smallest time used (the data end of every trajectory).
        grid_steps: Algorithm 1's grid t_k = t_min + k / grid_steps (spacing ``dt``).
        time_scale: the network's time input is ``time_scale * t`` (999 in the paper's
            code and score_sde's continuous VP models).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    grid_steps: int = 1000
    time_scale: float = 999.0

    def __post_init__(self):
        if not 0 <= self.beta_min <= self.beta_max or self.beta_max <= 0:
            raise ValueError(f"need 0 <= beta_min <= beta_max, beta_max > 0; got {self.beta_min}, {self.beta_max}")
        if not 0 < self.t_min < 1:
            raise ValueError(f"t_min must lie in (0, 1), got {self.t_min}")
        if int(self.grid_steps) != self.grid_steps or self.grid_steps < 1:
            raise ValueError(f"grid_steps must be a positive integer, got {self.grid_steps}")

    # ------------------------------------------------------------------ schedule
    @property
    def dt(self) -> float:
        """The grid spacing 1 / grid_steps."""
        return 1.0 / self.grid_steps

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) = beta_min + t (beta_max - beta_min)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def m(self, t: torch.Tensor) -> torch.Tensor:
        """m(t) = t beta_min / 2 + t^2 (beta_max - beta_min) / 4 (Eq. 5); alpha = exp(-m)."""
        return 0.5 * t * self.beta_min + 0.25 * t * t * (self.beta_max - self.beta_min)

    def m_inverse(self, m: torch.Tensor) -> torch.Tensor:
        """The t >= 0 with m(t) = m (the positive root of the quadratic)."""
        a, b = 0.5 * self.beta_min, 0.25 * (self.beta_max - self.beta_min)
        if b == 0:
            return m / a
        return 2.0 * m / (a + torch.sqrt(a * a + 4.0 * b * m))  # cancellation-free root

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale (marginal mean factor) alpha(t) = exp(-m(t))."""
        return torch.exp(-self.m(t))

    def v(self, t: torch.Tensor) -> torch.Tensor:
        """Noise variance v(t) = 1 - exp(-2 m(t)) (Eq. 6); -expm1 keeps it accurate at small t."""
        return -torch.expm1(-2.0 * self.m(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Marginal standard deviation sigma_t = sqrt(v(t))."""
        return torch.sqrt(self.v(t))

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time input of the network: ``time_scale * t``."""
        return self.time_scale * t

    # ---------------------------------------------------------------- the grid
    def time_grid(self, steps: int | None = None, t_min: float | None = None, *, dtype=torch.float64,
                  device=None) -> torch.Tensor:
        """The first ``steps`` grid points t_k = t_min + k dt, shape (steps,).

        For the paper's values this is exactly ``linspace(1e-3, 1, 1000)[:steps]``.
        """
        t_min = self.t_min if t_min is None else t_min
        steps = self.max_steps(t_min) if steps is None else steps
        return t_min + self.dt * torch.arange(steps, dtype=dtype, device=device)

    def max_steps(self, t_min: float | None = None) -> int:
        """How many grid points fit in [t_min, 1]."""
        t_min = self.t_min if t_min is None else t_min
        return int(round((1 - t_min) / self.dt)) + 1

    # -------------------------------------------------------------- the PF-ODE
    def drift(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """PF-ODE drift f(x, t) = -beta(t)/2 (x + s(x, t)) (Eq. 9 with dm = beta/2 dt).

        x, s: (B, ...); t: (B,).
        """
        b = self.beta(t).reshape(-1, *([1] * (x.dim() - 1)))
        return -0.5 * b * (x + s)

    def drift_divergence(self, t: torch.Tensor, div_s: torch.Tensor, dim: int) -> torch.Tensor:
        """nabla . f = -beta/2 (D + nabla . s); t, div_s: (B,)."""
        return -0.5 * self.beta(t) * (dim + div_s)

    @staticmethod
    def prior_logp(x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, I) of the prior at t = 1, per sample: x (B, ...) -> (B,)."""
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat * flat).sum(1) - 0.5 * d * math.log(2 * math.pi)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "VPSDE":
        return cls(**(d or {}))


#: The paper's SDE (and score_sde's continuous VP defaults).
VP = VPSDE()


def of(model) -> VPSDE:
    """The SDE a score model was trained with: its ``sde`` attribute, else :data:`VP`."""
    s = getattr(model, "sde", None)
    return s if isinstance(s, VPSDE) else VP
