"""Minus the denoising loss at one time t, as a score kind.

A model that memorized an image y denoises it almost perfectly: with
x = alpha(t) y + sigma(t) z its eps_theta(x, t) recovers z, so the loss

    L(y) = E_z mean_pixels (eps_theta(alpha y + sigma z, t) - z)^2

is low. The score is -L(y) (higher = more at risk), ``draws`` network evaluations per
image. On the clean_digits baseline it ranks planted duplicates far above every volume
score at t = 0.01; published CIFAR-10 DDPM membership attacks find their optimum near
t = 0.1-0.3 (Carlini et al. 2023; Kong et al. 2024).
"""
from __future__ import annotations

import math

import torch

from curate import _rng, sde
from curate.models import base
from curate.scores._registry import Param, Scored, ScoreKind, register


@torch.no_grad()
def denoising_loss(model, images: torch.Tensor, *, t: float = 0.01, draws: int = 4, seed: int = 0,
                   batch_size: int = 256, device=None) -> torch.Tensor:
    """L(y) for each image, (B,) float64 on the CPU: the mean over ``draws`` noise draws of
    the per-pixel mean of (eps_theta(alpha y + sigma z, t) - z)^2.

    images: (B, C, H, W) in [-1, 1]; ``batch_size`` noised images per network call. Each
    image's draws come from :func:`curate._rng.image_noise` (its own bytes and ``seed``),
    so a value does not depend on batching or order. A memorized image has a *low* loss.
    """
    base.check_model(model)
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    device = (base.model_device(model) or images.device) if device is None else device
    out = torch.empty(images.shape[0], dtype=torch.float64)
    tt = torch.tensor(float(t), dtype=torch.float64)
    vp = sde.of(model)
    a, s = float(vp.alpha(tt)), float(vp.sigma(tt))
    per = max(1, batch_size // draws)
    for start in range(0, images.shape[0], per):
        y = images[start:start + per]
        z = _rng.image_noise(y, seed, draws).to(device)  # (b, draws, C, H, W)
        yy = y.to(device=device, dtype=torch.float32).unsqueeze(1)
        x = (a * yy + s * z).flatten(0, 1)
        e = base.eps(model, x, torch.full((x.shape[0],), float(t), dtype=x.dtype, device=device))
        err = (e.to(torch.float64) - z.flatten(0, 1).to(torch.float64)).pow(2).flatten(1).mean(1)
        out[start:start + y.shape[0]] = err.reshape(y.shape[0], draws).mean(1).cpu()
    return out


def _scorer(model, images, *, seed, device, progress=False, t, draws) -> Scored:
    loss = denoising_loss(model, images, t=t, draws=draws, seed=seed, device=device)
    bad = {i: f"denoising loss is not finite ({v}): the model gives NaN/Inf on this image"
           for i, v in enumerate(loss.tolist()) if not math.isfinite(v)}
    return Scored(-loss, bad)


DENOISING_SCORE = register(ScoreKind(
    name="denoising_score", brain_method="curate_denoising_score",
    summary="-L(y): minus the denoising loss at time t, averaged over draws (higher = denoised better)",
    source="the DDPM training loss as a membership score (Matsumoto et al. 2023; Carlini et al. 2023)",
    params=(Param("t", 0.01, "diffusion time of the noised image", low=0.0, high=1.0, open_low=True),
            Param("draws", 4, "noise draws per image (network evaluations)", low=1)),
    scorer=_scorer, nfe=lambda dim, p, model: float(p["draws"]),
    text=lambda p, dim: f"t={p['t']}, {p['draws']} draws",
))
