"""What differs between the two images of a real near-duplicate pair, fitted.

Model (images on [0, 1], ``a`` and ``b`` (H, W, 3)): ``a`` is a window of ``b`` resampled,
blurred and recoloured,

    a(p) ~ g_c * B_sigma[ b(c0 + s * M(p - c0) + t) ]_c ** gamma + o_c      (per channel c)

* geometry: ``s`` the side of ``a``'s footprint in ``b`` (s < 1: a is a tighter crop of
  b), ``t = (tx, ty)`` the shift in pixels, ``M`` the identity or a left-right mirror;
  bilinear sampling; only pixels of ``a`` whose footprint lies inside ``b`` (less a
  one-pixel margin) count;
* blur: a Gaussian of ``sigma`` px on the warped ``b``; a negative ``sigma`` blurs ``a``
  instead (``b`` is the blurrier one: ``a`` was sharpened, or ``b`` resampled softer);
* colour: per-channel gain ``g_c`` and offset ``o_c`` (closed-form least squares) after a
  common ``gamma``.

Steps: (1) the best start over a grid of scales, integer shifts and mirroring (blur 0,
affine colour); (2) Nelder-Mead over (log s, tx, ty, sigma) from it; (3) gamma by a 1-D
bounded search at the fitted geometry; (4) the residual RMS (grey levels of 255) of the
final model on the counted pixels: what is left is noise, JPEG and edits the model lacks.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

SIGMA_MIN = 0.01  # px: a blur below this is none
XATOL = 0.002     # parameter tolerance of the local searches (px, log scale, gamma)


def _warp(b: np.ndarray, s: float, tx: float, ty: float, mirror: bool):
    """b (H, W, 3) sampled at a's pixels -> (H, W, 3) and the mask (H, W) of pixels inside b."""
    h, w = b.shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dx = xx - cx
    if mirror:
        dx = -dx
    sy, sx = cy + s * (yy - cy) + ty, cx + s * dx + tx
    out = np.stack([ndimage.map_coordinates(b[..., c], [sy, sx], order=1, mode="nearest") for c in range(3)], -1)
    inside = (sy >= 1) & (sy <= h - 2) & (sx >= 1) & (sx <= w - 2)
    return out, inside


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="nearest") if sigma > SIGMA_MIN else x


def _colour(x: np.ndarray, a: np.ndarray, mask: np.ndarray):
    """Per-channel least-squares a ~ g x + o on the mask: (gains (3,), offsets (3,), residual (n, 3))."""
    xs, ys = x[mask], a[mask]  # (n, 3)
    g, o = np.empty(3), np.empty(3)
    for c in range(3):
        xc = xs[:, c] - xs[:, c].mean()
        var = (xc * xc).mean()
        g[c] = (xc * (ys[:, c] - ys[:, c].mean())).mean() / var if var > 1e-8 else 0.0
        o[c] = ys[:, c].mean() - g[c] * xs[:, c].mean()
    return g, o, ys - (g * xs + o)


def _model(a, b, s, tx, ty, sigma, mirror, gamma=1.0):
    x, mask = _warp(b, s, tx, ty, mirror)
    target = a
    if sigma >= 0:
        x = _blur(x, sigma)
    else:
        target = _blur(a, -sigma)
    if gamma != 1.0:
        x = np.clip(x, 0, 1) ** gamma
    if mask.sum() < 64:
        return np.inf, None
    g, o, res = _colour(x, target, mask)
    return float(np.sqrt((res * res).mean())), (g, o)


def fit_pair(a: np.ndarray, b: np.ndarray, scales=(0.84, 0.92, 1.0, 1.09, 1.19)) -> dict:
    """uint8 (H, W, 3) images -> the fitted edit (see the module docstring)."""
    a = np.asarray(a, dtype=np.float64) / 255
    b = np.asarray(b, dtype=np.float64) / 255
    # (1) grid start
    best = (np.inf, None)
    for mirror in (False, True):
        for s in scales:
            for ty in range(-2, 3):
                for tx in range(-2, 3):
                    r, _ = _model(a, b, s, tx, ty, 0.0, mirror)
                    if r < best[0]:
                        best = (r, (np.log(s), float(tx), float(ty), 0.0, mirror))
    ls, tx, ty, sg, mirror = best[1]

    # (2) local continuous search (blur starts slightly positive: the simplex needs a spread)
    def f(v):
        if abs(v[0]) > 0.4 or abs(v[3]) > 3:
            return 1e3
        return _model(a, b, np.exp(v[0]), v[1], v[2], v[3], mirror)[0]

    best_v, best_r = None, np.inf
    for s0 in (0.3, -0.3):
        r = optimize.minimize(f, [ls, tx, ty, s0], method="Nelder-Mead",
                              options={"xatol": XATOL, "fatol": 1e-6, "maxiter": 400})
        if r.fun < best_r:
            best_v, best_r = r.x, r.fun
    ls, tx, ty, sg = best_v
    # (3) gamma at the fitted geometry
    gr = optimize.minimize_scalar(lambda gm: _model(a, b, np.exp(ls), tx, ty, sg, mirror, gm)[0],
                                  bounds=(0.5, 2.0), method="bounded", options={"xatol": XATOL})
    gamma = float(gr.x)
    r_gamma, (g, o) = _model(a, b, np.exp(ls), tx, ty, sg, mirror, gamma)
    r_rigid, _ = _model(a, b, 1.0, 0.0, 0.0, 0.0, False)
    return {"scale": float(np.exp(ls)), "tx": float(tx), "ty": float(ty), "shift": float(np.hypot(tx, ty)),
            "mirror": bool(mirror), "blur": float(sg), "gamma": gamma,
            "gains": [float(v) for v in g], "offsets": [float(v) * 255 for v in o],
            "gain_spread": float(g.max() / max(g.min(), 1e-6)),
            "residual": r_gamma * 255, "residual_unaligned": r_rigid * 255}


STATS = ("scale", "shift", "tx", "ty", "blur", "gamma", "gain_mean", "gain_spread", "offset_mean",
         "residual", "residual_unaligned")


def summarise(fits: list[dict], qs=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)) -> dict:
    """Quantiles of every fitted parameter over pairs (and the mirrored fraction)."""
    if not fits:
        return {}
    cols = {k: np.array([f[k] for f in fits]) for k in STATS if k in fits[0]}
    cols["gain_mean"] = np.array([np.mean(f["gains"]) for f in fits])
    cols["offset_mean"] = np.array([np.mean(f["offsets"]) for f in fits])
    cols["abs_log_scale"] = np.abs(np.log([f["scale"] for f in fits]))
    cols["abs_blur"] = np.abs([f["blur"] for f in fits])
    out = {k: {f"q{int(round(q * 100)):02d}": float(np.quantile(v, q)) for q in qs} for k, v in cols.items()}
    out["mirrored_fraction"] = float(np.mean([f["mirror"] for f in fits]))
    out["pairs"] = len(fits)
    return out
