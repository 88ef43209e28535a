"""The one score-model interface.

Any object with a method ``eps(x, t)`` is a score model: ``x`` has shape
(B, C, H, W) in data units ([-1, 1] at t = 0), ``t`` has shape (B,) with continuous
times in [t_min, 1], and the return value is the noise prediction, shaped like ``x``.
Everything else (the score, the PF-ODE drift) is derived here, in one place.

Optional extras a model may provide:

* ``divergence(x, t) -> (B,)``: the exact divergence of the *score* nabla . s.
* ``dtype``: the dtype the model computes in; inputs are cast to it and outputs
  cast back, so trajectories can be kept in float64 around a float32 network.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from curate import sde


@runtime_checkable
class ScoreModel(Protocol):
    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - protocol
        ...


def model_dtype(model) -> torch.dtype | None:
    """The dtype a model computes in: its ``dtype`` attribute or its first parameter's."""
    dt = getattr(model, "dtype", None)
    if isinstance(dt, torch.dtype):
        return dt
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.dtype
    return None


def check_model(model) -> None:
    """Raise a clear TypeError unless ``model`` has a callable ``eps(x, t)``."""
    if not callable(getattr(model, "eps", None)):
        raise TypeError(
            f"{type(model).__name__} is not a score model: it needs a method eps(x, t) "
            "taking x of shape (B, C, H, W) and t of shape (B,). Wrap a plain network with "
            "curate.models.EpsNetAdapter."
        )


def eps(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Call ``model.eps`` in the model's dtype and return the result in ``x``'s dtype."""
    md = model_dtype(model)
    if md is not None and md != x.dtype:
        return model.eps(x.to(md), t.to(md)).to(x.dtype)
    return model.eps(x, t)


def score(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s(x, t) = -eps(x, t) / sigma_t;  x: (B, C, H, W), t: (B,)."""
    st = sde.sigma(t).reshape(-1, *([1] * (x.dim() - 1)))
    return -eps(model, x, t) / st


def drift(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """PF-ODE drift f(x, t) = -beta/2 (x + s(x, t));  x: (B, C, H, W), t: (B,)."""
    return sde.drift(x, t, score(model, x, t))
