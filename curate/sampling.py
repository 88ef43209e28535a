"""Samplers for any score model: PF-ODE Euler (the paper's grid), PF-ODE Heun, and
Euler-Maruyama on the reverse VP-SDE.

All three integrate from t = 1 (x ~ N(0, I)) down to t_min on the uniform grid
``linspace(1, t_min, steps + 1)``; ``steps=999`` with t_min = 1e-3 is exactly the paper's
grid (spacing 1/1000). A final Tweedie step x0 = (x + v s) / alpha at t_min removes the
last bit of noise (``denoise=True``).

Reproducibility: the noise of sample j depends only on (seed, j) -- it is drawn in fixed
blocks of ``NOISE_BLOCK`` sample indices from generators seeded by (seed, stream, block)
-- so a sample is the same whatever ``batch_size`` is (up to floating-point batching
effects of the network). Initial noise is drawn on the CPU (the same on every device);
Euler-Maruyama's per-step noise is drawn on the model's device.
"""
from __future__ import annotations

import torch

from curate import _progress, sde
from curate._rng import mix_ints
from curate.models import base
from curate.models.base import check_model, drift, score

METHODS = ("euler", "heun", "em")
#: Noise is drawn per block of this many sample indices, so batch size does not change it.
NOISE_BLOCK = 64
def block_noise(seed: int, stream: int, start: int, stop: int, shape: tuple, *, device="cpu") -> torch.Tensor:
    """Standard normal noise (stop - start, *shape) float32 for sample indices [start, stop)."""
    first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
    parts = []
    for b in range(first, last + 1):
        g = torch.Generator(device=device).manual_seed(mix_ints(seed, stream, b))
        parts.append(torch.randn((NOISE_BLOCK, *shape), generator=g, device=device, dtype=torch.float32))
    z = torch.cat(parts) if len(parts) > 1 else parts[0]
    off = first * NOISE_BLOCK
    return z[start - off:stop - off]


def image_shape(model) -> tuple[int, int, int]:
    """(C, H, W) a model generates (:func:`curate.models.base.image_shape`); ValueError if it does not say."""
    shape = base.image_shape(model)
    if shape is None:
        raise ValueError(f"cannot tell the image shape {type(model).__name__} generates; pass shape=(C, H, W)")
    return shape


def _bcast(t: float, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), t, dtype=like.dtype, device=like.device)


@torch.no_grad()
def sample(model, n: int, *, method: str = "euler", steps: int = 1000, seed: int = 0,
           batch_size: int | None = None, progress: bool = True, t_min: float | None = None,
           denoise: bool = True, clip: bool = True, shape: tuple | None = None,
           dtype: torch.dtype = torch.float32, device=None, first: int = 0) -> torch.Tensor:
    """Draw ``n`` images (n, C, H, W) from a score model; float ``dtype`` on the CPU, in [-1, 1] when ``clip``.

    ``first``: the index of the first sample, so ``sample(m, 10, first=20)`` returns samples
    20..29 of ``sample(m, 30)`` (each sample's noise depends only on ``seed`` and its index).

    method: ``euler`` (PF-ODE, ``steps`` evaluations), ``heun`` (PF-ODE, 2 ``steps``
    evaluations) or ``em`` (reverse SDE Euler-Maruyama, ``steps`` evaluations).
    The trajectory is kept in ``dtype`` (float64 makes sense for :class:`ExactScore`);
    the network computes in its own dtype.
    """
    check_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")
    if int(n) < 1 or int(steps) < 1:
        raise ValueError("n and steps must be positive")
    if int(first) < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    vp = sde.of(model)
    t_min = vp.t_min if t_min is None else t_min
    if not 0 < t_min < 1:
        raise ValueError("t_min must be in (0, 1)")
    n, steps, first = int(n), int(steps), int(first)
    shape = tuple(shape) if shape is not None else image_shape(model)
    device = torch.device(device) if device is not None else (base.model_device(model) or torch.device("cpu"))
    batch_size = int(batch_size or min(n, 256))
    grid = torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64).tolist()
    evals = steps * (2 if method == "heun" else 1) + int(denoise)

    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    out = torch.empty((n, *shape), dtype=dtype)
    try:
        with _progress.progress(n * evals, f"sampling ({method}, {steps} steps)", progress) as advance:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                b = stop - start
                x = block_noise(seed, 0, first + start, first + stop, shape).to(device=device, dtype=dtype)
                for k in range(steps):
                    t0, t1 = grid[k], grid[k + 1]
                    h = t1 - t0  # negative: integrating backwards in time
                    tt = _bcast(t0, b, x)
                    if method == "euler":
                        x = x + h * drift(model, x, tt)
                    elif method == "heun":
                        d1 = drift(model, x, tt)
                        xe = x + h * d1
                        d2 = drift(model, xe, _bcast(t1, b, x))
                        x = x + 0.5 * h * (d1 + d2)
                    else:  # reverse SDE: dx = [-beta/2 x - beta s] dt + sqrt(beta) dW
                        bt = vp.beta(tt).reshape(-1, *([1] * len(shape)))
                        x_mean = x + h * (-0.5 * bt * x - bt * score(model, x, tt))
                        if k < steps - 1:
                            z = block_noise(seed, 1 + k, first + start, first + stop, shape, device=device).to(dtype)
                            x = x_mean + torch.sqrt(bt * -h) * z
                        else:
                            x = x_mean  # the last step returns the mean, as score_sde does
                    advance(b * (2 if method == "heun" else 1))
                if denoise:  # Tweedie: E[x0 | x_tmin] = (x + v s) / alpha
                    tt = _bcast(t_min, b, x)
                    a, v = vp.alpha(tt), vp.v(tt)
                    sz = (-1, *([1] * len(shape)))
                    x = (x + v.reshape(sz) * score(model, x, tt)) / a.reshape(sz)
                    advance(b)
                out[start:stop] = (x.clamp(-1, 1) if clip else x).to("cpu", dtype)
    finally:
        if was_training:
            model.train()
    return out
