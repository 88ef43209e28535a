"""The PF-ODE between two times, for the scores that integrate it (``reconstruction``,
``reproduction_probability``): Euler, Heun or DDIM on a uniform grid, either direction.

The grid is ``linspace(t_from, t_to, steps + 1)``; ``t_from = 1, t_to = t_min`` with Euler is
exactly :func:`curate.sampling.sample`'s grid and update, so a score that integrates from a
start x_1 lands where the audit's sampler would. Trajectories are kept in ``x``'s dtype (the
network runs in its own).
"""
from __future__ import annotations

import torch

from curate import sde
from curate.models import base

SOLVERS = ("euler", "heun", "ddim")


def evaluations(steps: int, solver: str) -> int:
    """Network evaluations of one trajectory of ``steps`` steps."""
    return steps * (2 if solver == "heun" else 1)


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


@torch.no_grad()
def integrate(model, x: torch.Tensor, t_from: float, t_to: float, steps: int, solver: str = "euler") -> torch.Tensor:
    """x (B, C, H, W) at time ``t_from`` carried along the PF-ODE to ``t_to``; same shape and dtype.

    euler: x += h f(x, t);  heun: the trapezoid on Euler's predictor (2 evaluations a step);
    ddim: x_s = alpha_s x0_hat + sigma_s eps with x0_hat = (x - sigma_t eps) / alpha_t, the
    PF-ODE's exponential integrator (exact when eps is constant along the path, as for one
    training image's exact score).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    vp = sde.of(model)
    grid = torch.linspace(float(t_from), float(t_to), int(steps) + 1, dtype=torch.float64)
    b = x.shape[0]
    for k in range(int(steps)):
        t0, t1 = grid[k], grid[k + 1]
        h = float(t1 - t0)  # negative when integrating towards the data
        tt = torch.full((b,), float(t0), dtype=x.dtype, device=x.device)
        if solver == "euler":
            x = x + h * base.drift(model, x, tt)
        elif solver == "heun":
            d1 = base.drift(model, x, tt)
            d2 = base.drift(model, x + h * d1, torch.full_like(tt, float(t1)))
            x = x + 0.5 * h * (d1 + d2)
        else:
            e = base.eps(model, x, tt)
            a0, s0, a1, s1 = (float(f(t)) for t in (t0, t1) for f in (vp.alpha, vp.sigma))
            x = a1 * (x - s0 * e) / a0 + s1 * e
    return x


@torch.no_grad()
def tweedie(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """E[x_0 | x_t] = (x + v s(x, t)) / alpha: the sampler's last denoising step (one evaluation)."""
    vp = sde.of(model)
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    return (x + _col(vp.v(tt), x) * base.score(model, x, tt)) / _col(vp.alpha(tt), x)


def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| / sqrt(D) per row, float64: (B, ...) x (B, ...) -> (B,)."""
    d = (a.to(torch.float64) - b.to(torch.float64)).flatten(1)
    return d.pow(2).mean(1).sqrt()
