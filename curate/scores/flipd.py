"""Local intrinsic dimension by FLIPD, as a score kind (value = -LID).

Kamkari et al., "A Geometric View of Data Complexity: Efficient Local Intrinsic Dimension
Estimation with Diffusion Models", NeurIPS 2024 (FLIPD); used to detect memorization by
Ross et al., "A Geometric Framework for Understanding Memorization in Generative Models",
ICLR 2025: a memorized image sits where the model's density has collapsed onto a
low-dimensional set (a point, at the extreme), so its LID is low.

From the Fokker-Planck equation of the VP-SDE, at a small time t,

    LID(x) = D + sigma_t^2 [ div s(alpha_t x, t) + |s(alpha_t x, t)|^2 ],

and with s = -eps / sigma_t this is

    LID(x) = D - sigma_t div eps(alpha_t x, t) + |eps(alpha_t x, t)|^2.

The score is -LID (higher = lower dimension = more at risk).

What is implemented, and where it differs from the paper:

* The score is evaluated at alpha_t x (the paper's psi(t_0) x, as in its code), not at x:
  for the exact score of one training image y this gives LID(y) = 0 at every t.
* The divergence (the trace of the Jacobian of eps) is, by ``divergence``:
  ``"exact"``: the model's closed form (``model.divergence``, e.g. ``ExactScore``) or
  else D Jacobian-vector products along the unit vectors (the paper's choice below
  D = 3500, so for CIFAR-10); ``"hutchinson"``: the mean of z^T (d eps/dx) z over
  ``probes`` Rademacher probes z (the paper draws Gaussian probes; Rademacher ones have
  lower variance and are exact for a diagonal Jacobian); ``"auto"`` (default): the
  model's closed form when it has one, else Hutchinson. Each image's probes are keyed by
  its own bytes and ``seed`` (:mod:`curate._rng`), so a value never depends on the batch.
  One JVP also returns eps itself, so a Hutchinson estimate costs ``probes`` evaluations.
* t = 0.05 by default: a small time, as the paper asks. I could not confirm offline the
  exact t_0 the papers use for CIFAR-10; tune ``t`` on data of your own. ``probes`` = 1
  by default (the cheapest unbiased estimate; raise it where the ranking is noisy).
* Every JVP goes through :func:`curate._autodiff.jvp`, so attention layers work.
"""
from __future__ import annotations

import math

import torch

from curate import _autodiff, _progress, _rng, sde
from curate.models import base
from curate.scores._common import BATCH_SIZE, check_batch_size, check_image_batch
from curate.scores._registry import Param, Scored, ScoreKind, register

DIVERGENCES = ("auto", "exact", "hutchinson")
#: The counter stream of the Hutchinson probes (curate._rng).
_STREAM = 0


def divergence_method(model, divergence: str) -> str:
    """How the divergence is computed: "closed" (the model's own), "exact" (D JVPs) or
    "hutchinson"."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if divergence in ("auto", "exact") and callable(getattr(model, "divergence", None)):
        return "closed"
    return "hutchinson" if divergence == "auto" else divergence


def flipd(model, images: torch.Tensor, *, t: float = 0.05, divergence: str = "auto", probes: int = 1,
          seed: int = 0, batch_size: int = BATCH_SIZE, device=None, progress=False) -> torch.Tensor:
    """FLIPD's local intrinsic dimension of each image: (B,) float64 on the CPU.

    LID(x) = D - sigma_t div eps(alpha_t x, t) + |eps(alpha_t x, t)|^2 for images x
    (B, C, H, W) in [-1, 1], D = C H W. ``divergence``/``probes``: see the module's notes;
    ``seed`` keys the Hutchinson probes. ``batch_size`` bounds the rows (images x probes)
    of one network call. Computed on ``device`` (default: the model's, else the images'),
    in float64 around the network, in any grad mode. A memorized image has a *low* LID.
    """
    base.check_model(model)
    check_image_batch(images)
    check_batch_size(batch_size)
    FLIPD.resolve(dict(t=t, probes=probes))  # the registry's ranges and messages
    how = divergence_method(model, divergence)
    device = torch.device(device) if device is not None else base.model_device(model) or images.device
    vp = sde.of(model)
    tt = torch.tensor(float(t), dtype=torch.float64)
    a, sig, v = float(vp.alpha(tt)), float(vp.sigma(tt)), float(vp.v(tt))
    B, shape = images.shape[0], tuple(images.shape[1:])
    D = math.prod(shape)
    K = {"closed": 1, "exact": D, "hutchinson": probes}[how]  # tangents per image
    per = max(1, batch_size // K)  # images per chunk
    keys = _rng.image_keys(images, seed) if how == "hutchinson" else None
    md = base.model_dtype(model)

    def eps_rows(z: torch.Tensor) -> torch.Tensor:
        """eps(z, t) on flat rows (R, D) -> (R, D)."""
        tz = torch.full((z.shape[0],), float(t), dtype=z.dtype, device=z.device)
        return base.eps(model, z.reshape(-1, *shape), tz).reshape(z.shape[0], D)

    out = torch.empty(B, dtype=torch.float64)
    with torch.no_grad(), _progress.progress(B, "FLIPD (images)", progress) as advance:
        for start in range(0, B, per):
            y = images[start:start + per].to(device=device, dtype=torch.float64).reshape(-1, D)
            b = y.shape[0]
            # The point FLIPD looks at: the mean alpha_t x of the noised image.
            x = a * y
            if how == "closed":
                e = eps_rows(x)
                tb = torch.full((b,), float(t), dtype=md or x.dtype, device=device)
                div_s = model.divergence(x.to(md or x.dtype).reshape(b, *shape), tb).to(torch.float64)
                # sigma_t div eps = -sigma_t^2 div s.
                sdiv = -v * div_s
            else:
                if how == "hutchinson":
                    z_all = _rng.rademacher(keys[start:start + b], _STREAM, K * D).to(device).reshape(b, K, D)
                trace = torch.zeros(b, dtype=torch.float64, device=device)
                e = None
                step = max(1, batch_size // b)
                for k0 in range(0, K, step):
                    kk = min(step, K - k0)
                    if how == "hutchinson":
                        z = z_all[:, k0:k0 + kk]
                    else:  # the unit vectors e_{k0}..e_{k0+kk-1}
                        z = torch.zeros(kk, D, dtype=torch.float64, device=device)
                        z[torch.arange(kk), torch.arange(k0, k0 + kk)] = 1.0
                        z = z.expand(b, kk, D)
                    # One JVP per tangent: eps at alpha_t x and (d eps/dx) z together.
                    prim, jz = _autodiff.jvp(eps_rows, x.repeat_interleave(kk, 0), z.reshape(b * kk, D))
                    trace += (z * jz.reshape(b, kk, D)).sum((1, 2))
                    if e is None:
                        e = prim.reshape(b, kk, D)[:, 0]
                # div eps: the exact trace, or Hutchinson's mean of z^T J z.
                sdiv = sig * (trace / K if how == "hutchinson" else trace)
            # LID = D - sigma_t div eps + |eps|^2 (the Fokker-Planck estimate).
            lid = D - sdiv + (e * e).sum(1)
            out[start:start + b] = lid.cpu()
            advance(b)
    return out


def _scorer(model, images, *, seed, device, progress=False, t, divergence, probes) -> Scored:
    lid = flipd(model, images, t=t, divergence=divergence, probes=probes, seed=seed, device=device,
                progress=progress)
    bad = {i: f"FLIPD's LID is not finite ({v}): the model gives NaN/Inf on this image"
           for i, v in enumerate(lid.tolist()) if not math.isfinite(v)}
    return Scored(-lid, bad)


def _nfe(dim: int, p: dict, model) -> float:
    how = divergence_method(model, p["divergence"])
    return float({"closed": 1, "exact": dim, "hutchinson": p["probes"]}[how])


def _text(p: dict, dim: int) -> str:
    probes = f", {p['probes']} probe" + ("s" if p["probes"] > 1 else "") if p["divergence"] != "exact" else ""
    return f"t={p['t']}, div={p['divergence']}{probes}"


FLIPD = register(ScoreKind(
    name="flipd", brain_method="curate_flipd",
    summary="-LID: minus FLIPD's local intrinsic dimension D - sigma div eps + |eps|^2 at alpha x "
            "(higher = the model's density is lower-dimensional there)",
    source="Kamkari et al. 2024 (FLIPD, NeurIPS); Ross et al. 2025 (LID and memorization, ICLR)",
    params=(Param("t", 0.05, "small diffusion time of the estimate", low=0.0, high=1.0, open_low=True),
            Param("divergence", "auto", "div eps: exact (the model's closed form, or D JVPs), hutchinson "
                  "(probes JVPs), auto (closed form when the model has one, else hutchinson)",
                  choices=DIVERGENCES),
            Param("probes", 1, "Hutchinson probes per image (divergence='hutchinson'/'auto')", low=1)),
    scorer=_scorer, nfe=_nfe, text=_text,
))
