"""Proximal initialization attack (PIA) as a score kind.

Kong et al., "An Efficient Membership Inference Attack for the Diffusion Model by
Proximal Initialization", ICLR 2024. For an image x_0 the attack

1. takes the model's own noise prediction at the data end as the noise,
   eps_0 = eps_theta(x_0, t_0) with t_0 ~ 0 (the "proximal initialization");
2. noises the image deterministically with it, x_t = alpha_t x_0 + sigma_t eps_0;
3. asks the model for the noise again, eps_theta(x_t, t);
4. measures d(x_0) = |eps_theta(x_t, t) - eps_0|_p.

A model that memorized x_0 is self-consistent there, so d is small; the score is
-d (higher = more at risk). Two network evaluations per image, no randomness.

What is implemented, and where it differs from the paper:

* t_0 ("t ~ 0" in the paper, step 0 of a discrete DDPM in its code) is the SDE's
  t_min = 1e-3 by default (Param ``t0``), not t = 0: step 0 of the 1000-step DDPM that
  curate maps onto the VP-SDE is t ~ 1e-3 (docs/design.md, section 1), continuous VP models are
  trained on [t_min, 1] only, and at t = 0 the noise prediction -sigma_t s is 0 / 0.
* t = 0.2 by default: the paper's attack step 200 of a 1000-step DDPM (t ~ 0.2 here).
* The paper (and its code) uses the l4 distance, summed |.|^4 over pixels; here the value
  is the l_p norm itself, (sum |.|^p)^(1/p) with p = ``norm`` (4 by default, 2 for the
  plain l2), a monotone transform of the paper's statistic: the ranking is the same.
* The paper's eps_theta(x, i) at integer steps i is ``curate.models.base.eps`` at the
  continuous time of the model's SDE (adapters map discrete steps onto it).
"""
from __future__ import annotations

import math

import torch

from curate import sde
from curate.models import base
from curate.scores._common import BATCH_SIZE, check_batch_size, check_image_batch, lp_norm
from curate.scores._registry import Param, Scored, ScoreKind, register

@torch.no_grad()
def pia_distance(model, images: torch.Tensor, *, t: float = 0.2, t0: float = sde.VP.t_min, norm: float = 4.0,
                 batch_size: int = BATCH_SIZE, device=None) -> torch.Tensor:
    """PIA's distance d(x_0) = |eps_theta(alpha_t x_0 + sigma_t eps_0, t) - eps_0|_p with
    eps_0 = eps_theta(x_0, t_0), for each image: (B,) float64 on the CPU.

    images: (B, C, H, W) in [-1, 1]; ``batch_size`` images per network call; computed on
    ``device`` (default: the model's, else the images'), in float64 around the network
    (which runs in its own dtype). A memorized image has a *small* distance.
    """
    base.check_model(model)
    check_image_batch(images)
    check_batch_size(batch_size)
    PIA.resolve(dict(t=t, t0=t0, norm=norm))  # the registry's ranges and messages
    device = torch.device(device) if device is not None else base.model_device(model) or images.device
    vp = sde.of(model)
    tt = torch.tensor(float(t), dtype=torch.float64)
    a, s = float(vp.alpha(tt)), float(vp.sigma(tt))
    out = torch.empty(images.shape[0], dtype=torch.float64)
    for start in range(0, images.shape[0], batch_size):
        x0 = images[start:start + batch_size].to(device=device, dtype=torch.float64)
        b = x0.shape[0]
        # Step 1: the proximal initialization, the model's own noise at the data end.
        eps0 = base.eps(model, x0, torch.full((b,), float(t0), dtype=x0.dtype, device=device))
        # Step 2: noise the image deterministically with it.
        xt = a * x0 + s * eps0
        # Step 3: the model's noise prediction at time t.
        eps_t = base.eps(model, xt, torch.full((b,), float(t), dtype=x0.dtype, device=device))
        # Step 4: the l_p distance between the two predictions.
        out[start:start + b] = lp_norm(eps_t - eps0, float(norm)).cpu()
    return out


def _non_finite(values: torch.Tensor, what: str) -> dict[int, str]:
    """{index: message} for the entries of ``values`` (B,) that are NaN or Inf."""
    return {i: f"{what} is not finite ({v}): the model gives NaN/Inf on this image"
            for i, v in enumerate(values.tolist()) if not math.isfinite(v)}


def _scorer(model, images, *, seed, device, progress=False, t, t0, norm) -> Scored:
    del seed, progress  # deterministic, and two quick calls per chunk
    d = pia_distance(model, images, t=t, t0=t0, norm=norm, device=device)
    return Scored(-d, _non_finite(d, "PIA distance"))


PIA = register(ScoreKind(
    name="pia", brain_method="curate_pia",
    summary="-|eps(alpha x + sigma eps0, t) - eps0|_p with eps0 = eps(x, t0): minus PIA's distance "
            "(higher = the model is self-consistent at the image)",
    source="Kong et al. 2024, proximal initialization attack (PIA), ICLR",
    params=(Param("t", 0.2, "diffusion time of the attack (paper: step 200 of 1000)", low=0.0, high=1.0,
                  open_low=True),
            Param("t0", sde.VP.t_min, "time of the proximal initialization eps0 = eps(x, t0) (paper: t ~ 0)",
                  low=0.0, high=1.0, open_low=True),
            Param("norm", 4.0, "p of the l_p distance (paper: 4)", low=1.0)),
    scorer=_scorer, nfe=lambda dim, p, model: 2.0,
    text=lambda p, dim: f"t={p['t']}, t0={p['t0']:g}, l{p['norm']:g}",
))
