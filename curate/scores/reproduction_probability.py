"""The probability that the audit's sampler reproduces an image, as a score kind.

p(x) = P_{x_1 ~ N(0, I)}[ |Phi(x_1) - x| / sqrt(D) < threshold ], Phi the sampler the audit
uses (PF-ODE Euler, S steps from t = 1 to t_min, Tweedie step, clip): the prior mass of the
starting points whose trajectory ends within the copy threshold of x. The value is p itself,
a probability (expected reproductions of x in n samples: n p).

Estimated by importance sampling around the image's inverted latent:

1. invert: u = the PF-ODE carried forward from x at t_min to t = 1 (S Euler steps);
   u_hat = u / |u|;
2. propose N starts from the deterministic mixture q = sum_m pi_m N(kappa_m u_hat, I), the
   shifts kappa_m = shift * m / (M - 1), m = 0 .. M - 1 (equal shares; kappa_0 = 0 is the
   prior itself, a defensive component that bounds every weight by M);
3. run the sampler from each start; h_j = 1 when it ends within the threshold of x;
4. self-normalised weights w_j = N(x_j; 0, I) / q(x_j) in float64 log space, which depend on
   x_j only through s_j = u_hat . x_j:  1 / w_j = sum_m pi_m exp(kappa_m s_j - kappa_m^2 / 2);
   p = sum_j w_j h_j / sum_j w_j; effective sample size (sum w)^2 / sum w^2; delta-method
   standard error sqrt(sum w_j^2 (h_j - p)^2) / sum w_j.

Why shifted unit Gaussians and not balls N(u, r^2 I) around u itself: in D dimensions the
prior puts almost no mass near any one point. For x = u + r e, log N(x; 0, I) - log N(x; u, r^2 I)
is about D log r - |u|^2/2 ~ -D/2 for |u|^2 ~ D, so every such weight is ~e^{-D/2} (e^{-384}
at 16x16x3) against the defensive draws: the estimate would be the defensive draws' plain
Monte Carlo. A set of starts that end at x with prior mass p ~ 1e-3 is a wide region, like a
half-space {s > c} with c ~ 3; shifting the mean along u_hat by kappa ~ c (exponential tilting)
is the classic efficient proposal for such events, and its weights stay moderate.
Cost: S (inversion) + N (S + 1) network evaluations per image.

Measured (docs/scores-ceiling.md, two tiny U-Nets on 48 CIFAR-10 images at 8x8): exact on
exact scores, but **not calibrated on a trained model**: p = 0 for 34 and 43 of 48 images that
the sampler did reproduce (rates 2e-4 to 1e-2). The inversion is right (the sampler maps u back
to the image), but the starts that copy an image lie in directions unrelated to u (their cosine
with u_hat is that of random directions), so neither balls around u nor shifts along it reach
the copying region's mass; only the defensive draws (plain Monte Carlo) do. Read it as a
ranking (Spearman with the measured rate 0.42 there), and measure rates with the audit.
"""
from __future__ import annotations

import math

import torch

from curate import _progress, _rng, sde
from curate.memorization import RMS_THRESHOLD
from curate.models import base
from curate.scores._ode import integrate, rms, tweedie
from curate.scores._registry import Param, Scored, ScoreKind, register


def shifts(shift: float, components: int) -> torch.Tensor:
    """kappa_m = shift * m / (M - 1), m = 0 .. M - 1 (M = 1: the prior alone), (M,) float64."""
    if components == 1:
        return torch.zeros(1, dtype=torch.float64)
    return shift * torch.arange(components, dtype=torch.float64) / (components - 1)


def log_weights(s: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log w = log N(x; 0, I) - log q(x) for starts with projections s = u_hat . x (N,), float64.

    q = (1/M) sum_m N(kappa_m u_hat, I): log N(x; 0, I) - log N(x; kappa u_hat, I) =
    -kappa s + kappa^2 / 2, so log w = -logsumexp_m(kappa_m s - kappa_m^2 / 2 - log M).
    """
    s = s.to(torch.float64).reshape(-1, 1)
    k = kappa.reshape(1, -1)
    return -torch.logsumexp(k * s - 0.5 * k * k, 1) + math.log(kappa.numel())


def estimate(log_w: torch.Tensor, hits: torch.Tensor) -> tuple[float, float, float]:
    """Self-normalised p, its delta-method standard error and the effective sample size from
    log weights (N,) and hits (N,) in {0, 1}."""
    w = torch.exp(log_w - log_w.max())  # the scale cancels in every ratio below
    h = hits.to(torch.float64)
    total = w.sum()
    p = float((w * h).sum() / total)
    se = float(torch.sqrt((w * w * (h - p) ** 2).sum()) / total)
    ess = float(total * total / (w * w).sum())
    return p, se, ess


@torch.no_grad()
def starts(images: torch.Tensor, latents: torch.Tensor, *, proposals: int, shift: float, components: int,
           seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2: the N starts of each image (B, N, C, H, W) float64 and their log weights (B, N).

    Start j of an image draws from component j mod M (a deterministic mixture); its noise comes
    from the image's own bytes and ``seed`` (:func:`curate._rng.image_noise`).
    """
    kappa = shifts(shift, components)
    B = images.shape[0]
    u_hat = latents.to(torch.float64).flatten(1)
    u_hat = u_hat / u_hat.norm(dim=1, keepdim=True)
    e = _rng.image_noise(images, seed, proposals).to(torch.float64).flatten(2)  # (B, N, D)
    k = kappa[torch.arange(proposals) % components].reshape(1, -1, 1)
    x = e + k * u_hat.unsqueeze(1)
    s = torch.einsum("bnd,bd->bn", x, u_hat)
    return x.reshape(B, proposals, *images.shape[1:]), log_weights(s.flatten(), kappa).reshape(B, proposals)


@torch.no_grad()
def sampler_ends(model, x1: torch.Tensor, steps: int) -> torch.Tensor:
    """Step 3's sampler: :func:`curate.sampling.sample` from given starts x1 (B, C, H, W):
    Euler from t = 1 to t_min on the same grid, Tweedie step, clip to [-1, 1]."""
    t_min = sde.of(model).t_min
    return tweedie(model, integrate(model, x1, 1.0, t_min, steps, "euler"), t_min).clamp(-1, 1)


@torch.no_grad()
def reproduction_probability(model, images: torch.Tensor, *, steps: int = 100, proposals: int = 64,
                             shift: float = 4.0, components: int = 5, threshold: float = RMS_THRESHOLD,
                             seed: int = 0, batch_size: int = 256, device=None, dtype=None,
                             progress: bool = False) -> dict[str, torch.Tensor]:
    """p, its standard error, the effective sample size and the hits of each image: a dict of
    (B,) float64 tensors ``p``, ``se``, ``ess``, ``hits`` (unweighted hit count).

    images: (B, C, H, W) in [-1, 1]. ``batch_size`` trajectories per network call; trajectories
    are kept in ``dtype`` (default: the images'; the network computes in its own).
    """
    dtype = images.dtype if dtype is None else dtype
    device = torch.device(device) if device is not None else (base.model_device(model) or images.device)
    t_min = sde.of(model).t_min
    B = images.shape[0]
    out = {k: torch.empty(B, dtype=torch.float64) for k in ("p", "se", "ess", "hits")}
    per = max(1, batch_size // proposals)
    with _progress.progress(B, f"reproduction probability ({proposals} starts, {steps} steps)", progress) as advance:
        for start in range(0, B, per):
            y = images[start:start + per]
            b = y.shape[0]
            # Step 1: the inverted latent, forward along the PF-ODE from t_min to 1.
            u = integrate(model, y.to(device=device, dtype=dtype), t_min, 1.0, steps, "euler")
            # Step 2: the starts and their weights (float64, on the CPU).
            x1, log_w = starts(y, u.cpu(), proposals=proposals, shift=shift, components=components, seed=seed)
            # Step 3: the sampler from every start, and which end within the threshold.
            ends = sampler_ends(model, x1.flatten(0, 1).to(device=device, dtype=dtype), steps).cpu()
            d = rms(ends, y.cpu().unsqueeze(1).expand(b, proposals, *y.shape[1:]).flatten(0, 1))
            hits = (d < threshold).reshape(b, proposals)
            # Step 4: the self-normalised estimate.
            for i in range(b):
                p, se, ess = estimate(log_w[i], hits[i])
                out["p"][start + i], out["se"][start + i], out["ess"][start + i] = p, se, ess
                out["hits"][start + i] = float(hits[i].sum())
            advance(b)
    return out


def _scorer(model, images, *, seed, device, progress=False, steps, proposals, shift, components,
            threshold) -> Scored:
    r = reproduction_probability(model, images, steps=steps, proposals=proposals, shift=shift,
                                 components=components, threshold=threshold, seed=seed, device=device,
                                 progress=progress)
    p = r["p"]
    bad = {i: f"reproduction probability is not finite ({v}): the model gives NaN/Inf on this image"
           for i, v in enumerate(p.tolist()) if not math.isfinite(v)}
    return Scored(p, bad, extra={"reproduction_log10p": torch.log10(p), "reproduction_se": r["se"],
                                 "reproduction_ess": r["ess"]})


REPRODUCTION_PROBABILITY = register(ScoreKind(
    name="reproduction_probability", brain_method="curate_reproduction_probability",
    summary="p: the prior mass of starts x_1 ~ N(0, I) whose Euler PF-ODE sample lands within the "
            "RMS threshold of the image, by importance sampling along its inverted latent (a probability)",
    source="issue 22: importance sampling around the PF-ODE inversion (cf. Ma et al. 2024, InvMM)",
    params=(Param("steps", 100, "Euler steps of the audit's sampler (and of the inversion)", low=1, high=10000),
            Param("proposals", 64, "starts N per image", low=2, high=65536),
            Param("shift", 4.0, "largest shift kappa of the proposal means along the latent", low=0.0, high=20.0),
            Param("components", 5, "mixture components M (shifts 0 .. shift, equally spaced)", low=1, high=64),
            Param("threshold", RMS_THRESHOLD, "copy threshold on |x_hat - x| / sqrt(D)", low=0.0, open_low=True)),
    scorer=_scorer, nfe=lambda dim, p, model: float(p["steps"] + p["proposals"] * (p["steps"] + 1)),
    extras=("reproduction_log10p", "reproduction_se", "reproduction_ess"),
    text=lambda p, dim: f"{p['proposals']} starts, {p['steps']} Euler steps, shifts 0..{p['shift']:g} "
                        f"({p['components']}), RMS < {p['threshold']:g}",
))
