"""A plain, per-image implementation of Algorithm 1, written straight from the paper.

One image at a time, the N surrounding points in one network call, the sort and the
Gram-Schmidt in Python loops. It exists as an independent second computation for the
tests and as the baseline of ``curate bench``; use :func:`curate.track_volume_growth`.
"""
from __future__ import annotations

import torch

from curate import _rng, sde
from curate.models import base


def gram_schmidt(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gram-Schmidt of a list of (D,) vectors, in order.

    Each vector is projected out twice ("twice is enough", Giraud et al. 2005): the
    stretched axes can be nearly parallel, where a single pass loses orthogonality.
    """
    out: list[torch.Tensor] = []
    for r in rows:
        w = r.clone()
        for _ in range(2):
            for q in out:
                w = w - (w @ q) * q
        out.append(w / w.norm())
    return out


def reference_log_growth(model, image: torch.Tensor, *, axes: int, sigma: float, steps: int,
                         t_min: float | None = None, seed: int = 0) -> torch.Tensor:
    """log l_t after each step for one image (C, H, W): a (steps,) float64 tensor."""
    shape, D, N = tuple(image.shape), image.numel(), axes
    vp = sde.of(model)
    t_min = vp.t_min if t_min is None else t_min
    key = _rng.image_keys(image.unsqueeze(0), seed)
    # Lines 3-4: eps ~ N(0, I) in R^{N x D}; X_0 = x_0 + GramSchmidt(eps) * sigma.
    eps = _rng.normal(key, stream=0, count=N * D).reshape(N, D).to(image.dtype)
    centre = image.reshape(D).clone()
    X = [centre + sigma * q for q in gram_schmidt(list(eps))]
    log_l, L = 0.0, []
    for k in range(steps):
        t = t_min + k * vp.dt
        # Lines 6-7: forward ODE (one Euler step) of the centre and the N points.
        pts = torch.stack([centre] + X).reshape(N + 1, *shape)
        tt = torch.full((N + 1,), t, dtype=image.dtype)
        moved = (pts + vp.dt * base.drift(model, pts, tt)).reshape(N + 1, D)
        new_centre, new_X = moved[0], list(moved[1:])
        # Lines 8-10: add log(|x^(k)_{t+1} - x^(0)_{t+1}| / |x^(k)_t - x^(0)_t|).
        for xk_new, xk in zip(new_X, X):
            log_l += float(torch.log((xk_new - new_centre).norm().double())
                           - torch.log((xk - centre).norm().double()))
        L.append(log_l)
        # Line 11: sort by distance from the centre, largest first.
        diffs = sorted((x - new_centre for x in new_X), key=lambda d: -float(d.norm()))
        # Lines 12-13: Gram-Schmidt, then back to radius sigma about the centre.
        X = [new_centre + sigma * q for q in gram_schmidt(diffs)]
        centre = new_centre
    return torch.tensor(L, dtype=torch.float64)
