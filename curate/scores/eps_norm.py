"""The clean-input noise prediction (SimA) as a score kind, ``eps_norm``.

Rao, Qu & Moyer, "Score-based Membership Inference on Diffusion Models", 2025 (SimA).
Feed the *clean* image x_0 to the noise predictor at a small time t and take the size of
its answer, |eps_theta(x_0, t)|_p. Their argument: the ideal denoiser points from x_0 to a
kernel-weighted mean of the training images near it,

    eps(x_0, t) = (x_0 - alpha_t E[y | x_t = x_0]) / sigma_t,

so its norm is small where the model put a training image (x_0 sits on a mode of p_t)
and large far from every one. Their attack calls an image a member when the norm is
small (their code ranks by the distance sum |eps|^4). The score is therefore
-|eps_theta(x_0, t)|_p (higher = more at risk); with the exact score of a training set
(``ExactScore``) it is -|x_0 - alpha_t ybar(x_0)|_p / sigma_t, near -(1 - alpha_t)|x_0|_p / sigma_t
for a training image and far lower for any other, which the tests check.
One network evaluation per image, no randomness.

What is implemented, and where it differs from the paper:

* The paper sweeps the attack step (0..200 of a 1000-step DDPM in its CIFAR-10 scripts)
  and reports the best; it fixes no default. ``t`` = 0.01 here (a small time, as the
  method asks: step ~9 of a 1000-step DDPM); tune it on data of your own.
* The value is the l_p norm (sum |eps|^p)^(1/p), p = ``norm`` = 4 as in the paper's code
  (which sums |eps|^4, a monotone transform: same ranking); p = 2 gives the Euclidean norm.
* SimA-MC (the Monte-Carlo variant that averages predictions at noised inputs) is not
  implemented.
"""
from __future__ import annotations

import math

import torch

from curate.models import base
from curate.scores._common import BATCH_SIZE, check_batch_size, check_image_batch, lp_norm
from curate.scores._registry import Param, Scored, ScoreKind, register

@torch.no_grad()
def eps_norm(model, images: torch.Tensor, *, t: float = 0.01, norm: float = 4.0, batch_size: int = BATCH_SIZE,
             device=None) -> torch.Tensor:
    """|eps_theta(x_0, t)|_p of each clean image x_0: (B,) float64 on the CPU.

    images: (B, C, H, W) in [-1, 1]; ``batch_size`` images per network call; computed on
    ``device`` (default: the model's, else the images'), in float64 around the network.
    A memorized image has a *small* norm.
    """
    base.check_model(model)
    check_image_batch(images)
    check_batch_size(batch_size)
    EPS_NORM.resolve(dict(t=t, norm=norm))  # the registry's ranges and messages
    device = torch.device(device) if device is not None else base.model_device(model) or images.device
    out = torch.empty(images.shape[0], dtype=torch.float64)
    for start in range(0, images.shape[0], batch_size):
        x0 = images[start:start + batch_size].to(device=device, dtype=torch.float64)
        # The noise the model sees in the clean image at time t, and its size.
        e = base.eps(model, x0, torch.full((x0.shape[0],), float(t), dtype=x0.dtype, device=device))
        out[start:start + x0.shape[0]] = lp_norm(e, float(norm)).cpu()
    return out


def _scorer(model, images, *, seed, device, progress=False, t, norm) -> Scored:
    del seed, progress  # deterministic, one call per chunk
    n = eps_norm(model, images, t=t, norm=norm, device=device)
    bad = {i: f"noise prediction norm is not finite ({v}): the model gives NaN/Inf on this image"
           for i, v in enumerate(n.tolist()) if not math.isfinite(v)}
    return Scored(-n, bad)


EPS_NORM = register(ScoreKind(
    name="eps_norm", brain_method="curate_eps_norm",
    summary="-|eps(x, t)|_p: minus the size of the noise the model sees in the clean image "
            "(higher = the image sits on a mode of the model)",
    source="Rao, Qu & Moyer 2025, SimA (score-based membership inference)",
    params=(Param("t", 0.01, "small diffusion time at which the clean image is fed to the model",
                  low=0.0, high=1.0, open_low=True),
            Param("norm", 4.0, "p of the l_p norm (paper: 4)", low=1.0)),
    scorer=_scorer, nfe=lambda dim, p, model: 1.0,
    text=lambda p, dim: f"t={p['t']}, l{p['norm']:g}",
))
