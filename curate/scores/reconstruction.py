"""Reconstruction from mid noise, as a score kind.

For an image x and K noise draws z_k (keyed by the image's own bytes and the seed):

1. noise it to time t: x_t = alpha(t) x + sigma(t) z_k;
2. carry x_t back to t_min along the PF-ODE (S steps of Euler, Heun or DDIM), then take the
   sampler's last denoising step (Tweedie) and clip to [-1, 1], as :func:`curate.sampling.sample`;
3. measure the distance d_k of the reconstruction to x: ``rms`` |x_hat - x| / sqrt(D) (the
   audit's copy distance) or ``aligned``, the near-duplicate descriptor's aligned distance
   (:mod:`curate.duplicates`: best zoom, shift and mirror);
4. value = -(1/K) sum_k d_k (higher = the flow from mid noise returns to the image).

A model that reproduces x has a basin of attraction around it: from x_t most of the way to
noise the flow still returns to x. With the exact score of one training image x0 the flow is
linear, x_s = alpha(s) x0 + sigma(s)/sigma(t) (x_t - alpha(t) x0), and every draw comes back
to x0 (up to sigma(t_min) |z| / sqrt(D) without the denoising step).
Cost: K (S * (2 if heun else 1) + denoise) network evaluations per image.

Defaults t = 0.5, S = 50, K = 8 (408 evaluations), from docs/scores-ceiling.md (two tiny
U-Nets on 48 CIFAR-10 images at 8x8, labels from 20,480 samples): t = 0.5 was the best of
0.3-0.7 on both models; K = 16 was better than 8 on one and worse on the other (within the
noise of 24 images), so the cheaper K; S = 25 ranked the images as S = 50 did (Spearman 0.999),
but S = 50 is what the issue's 16x16 probe measured. Euler, because on the stiff end near
t_min Heun is less accurate at these step counts (see the tests).
"""
from __future__ import annotations

import math

import torch

from curate import _progress, _rng, sde
from curate.models import base
from curate.scores._common import BATCH_SIZE
from curate.scores._ode import SOLVERS, evaluations, integrate, rms, tweedie
from curate.scores._registry import Param, Scored, ScoreKind, register

DISTANCES = ("rms", "aligned")


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, *, t: float = 0.5, steps: int = 50, draws: int = 8,
                solver: str = "euler", denoise: bool = True, clip: bool = True, seed: int = 0,
                batch_size: int = BATCH_SIZE, device=None, dtype=None, advance=None) -> torch.Tensor:
    """The K reconstructions of each image from time t: (B, K, C, H, W) in ``dtype`` (default:
    the images') on the CPU.

    images: (B, C, H, W) in [-1, 1]. Each image's draws come from
    :func:`curate._rng.image_noise` (its bytes and ``seed``), so its reconstructions do not
    depend on the batch; about ``batch_size`` trajectories run per network call.
    """
    vp = sde.of(model)
    dtype = images.dtype if dtype is None else dtype
    if not vp.t_min < t <= 1:
        raise ValueError(f"t must lie in (t_min, 1] = ({vp.t_min:g}, 1], got {t}")
    device = torch.device(device) if device is not None else (base.model_device(model) or images.device)
    tt = torch.tensor(float(t), dtype=torch.float64)
    a, s = float(vp.alpha(tt)), float(vp.sigma(tt))
    out = torch.empty((images.shape[0], draws, *images.shape[1:]), dtype=dtype)
    per = max(1, batch_size // draws)
    for start in range(0, images.shape[0], per):
        y = images[start:start + per]
        z = _rng.image_noise(y, seed, draws)  # (b, K, C, H, W): each image's own draws
        # Step 1: noise every image to time t, K times.
        x = (a * y.to(torch.float64).unsqueeze(1) + s * z.to(torch.float64)).flatten(0, 1)
        x = x.to(device=device, dtype=dtype)
        # Step 2: back along the PF-ODE, then the sampler's Tweedie step and clip.
        x = integrate(model, x, t, vp.t_min, steps, solver)
        if denoise:
            x = tweedie(model, x, vp.t_min)
        if clip:
            x = x.clamp(-1, 1)
        out[start:start + y.shape[0]] = x.reshape(y.shape[0], draws, *y.shape[1:]).to("cpu", dtype)
        if advance is not None:
            advance(y.shape[0])
    return out


def aligned_distances(images: torch.Tensor, recs: torch.Tensor) -> torch.Tensor:
    """The near-duplicate aligned distance (in [0, 2]) of each image (B, C, H, W) to each of
    its reconstructions (B, K, C, H, W): (B, K) float64."""
    import numpy as np

    from curate.duplicates.align import Aligner
    from curate.duplicates.descriptor import Descriptor
    from curate.duplicates.verify import PairVerifier

    B, K = recs.shape[:2]
    both = torch.cat([images.unsqueeze(1).to(recs.dtype), recs], 1).flatten(0, 1)  # (B (K+1), C, H, W)
    desc = Descriptor()
    _, canvases = desc.describe(both.to(torch.float64).numpy())
    rows = np.arange(B)[:, None] * (K + 1)
    pairs = np.stack(np.broadcast_arrays(rows, rows + np.arange(1, K + 1)[None]), -1).reshape(-1, 2)
    # refine every pair: a reconstruction is scored by its exact aligned distance
    dist = PairVerifier(Aligner(desc.spec), canvases, mirror=True, refine_below=math.inf).distances(pairs)
    return torch.from_numpy(np.asarray(dist, dtype=np.float64)).reshape(B, K)


def distances(model, images: torch.Tensor, *, t: float, steps: int, draws: int, solver: str, distance: str,
              denoise: bool = True, seed: int = 0, device=None, progress: bool = False) -> torch.Tensor:
    """d_k of every image and draw, (B, K) float64: step 3 on :func:`reconstruct`'s output."""
    with _progress.progress(images.shape[0], f"reconstruction ({solver}, t={t:g}, {steps} steps)",
                            progress) as advance:
        recs = reconstruct(model, images, t=t, steps=steps, draws=draws, solver=solver, denoise=denoise,
                           seed=seed, device=device, advance=advance)
    if distance == "aligned":
        return aligned_distances(images.cpu(), recs)
    return rms(recs.flatten(0, 1), images.cpu().unsqueeze(1).expand_as(recs).flatten(0, 1)).reshape(recs.shape[:2])


def _scorer(model, images, *, seed, device, progress=False, t, steps, draws, solver, distance, denoise) -> Scored:
    d = distances(model, images, t=t, steps=steps, draws=draws, solver=solver, distance=distance,
                  denoise=denoise, seed=seed, device=device, progress=progress)
    value = -d.mean(1)  # Step 4
    bad = {i: f"reconstruction distance is not finite ({-v}): the model gives NaN/Inf on this image"
           for i, v in enumerate(value.tolist()) if not math.isfinite(v)}
    return Scored(value, bad)


def _nfe(dim, p, model) -> float:
    return float(p["draws"] * (evaluations(p["steps"], p["solver"]) + int(p["denoise"])))


RECONSTRUCTION = register(ScoreKind(
    name="reconstruction", brain_method="curate_reconstruction",
    summary="-(1/K) sum_k d(x_hat_k, x): minus the mean distance to the image of its K reconstructions "
            "by the PF-ODE from x_t = alpha x + sigma z_k (higher = the flow returns to the image)",
    source="reconstruction from mid noise (issue 22; cf. Carlini et al. 2023, Sec. 4; Ma et al. 2024)",
    params=(Param("t", 0.5, "diffusion time the image is noised to", low=0.0, high=1.0, open_low=True),
            Param("steps", 50, "PF-ODE steps from t back to t_min", low=1, high=10000),
            Param("draws", 8, "noise draws K per image", low=1, high=4096),
            Param("solver", "euler", "PF-ODE solver", choices=SOLVERS),
            Param("distance", "rms", "rms |x_hat - x|/sqrt(D), or the near-duplicate aligned distance",
                  choices=DISTANCES),
            Param("denoise", True, "end with the sampler's Tweedie step at t_min")),
    scorer=_scorer, nfe=_nfe,
    text=lambda p, dim: f"t={p['t']}, {p['steps']} {p['solver']} steps, {p['draws']} draws, {p['distance']}",
))
