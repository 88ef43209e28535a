"""Volume growth along the probability-flow ODE: Algorithm 1 of the paper, batched.

For each image x^(0) (the centre) the tracker follows N surrounding points on a
sphere of radius sigma through T forward-Euler steps of the PF-ODE
dx/dt = f(x, t) = -beta(t)/2 (x + s(x, t)) on the paper's grid t_k = t_min + k/1000,
and accumulates the log volume growth (Eq. 13)

    log l_T = sum_t sum_k log(|x^(k)_{t+1} - x^(0)_{t+1}| / |x^(k)_t - x^(0)_t|).

Two ways to carry the axes:

* ``method="fd"``: Algorithm 1 exactly (finite differences of radius sigma).
* ``method="jvp"``: tangent vectors pushed through the Euler step with forward-mode
  autodiff, the exact sigma -> 0 limit of Algorithm 1.

Optionally it integrates the full-dimensional divergence int nabla.f dt along the
centre (exact, or Hutchinson probes) and the prior term log N(x_T; 0, I); their sum
is the PF-ODE log-likelihood of the image (Song et al. 2021) when the steps reach t=1.

Everything is vectorised over images and axes; chunks of images bound the memory.
Per-image random directions come from :mod:`curate._rng`, keyed by the image bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from curate import _progress, _rng, sde
from curate._tracker import _cuda_eval_batch, _track_chunk, rows_that_fit  # noqa: F401  (rows_that_fit: public)
from curate.models import base

_METHODS = ("fd", "jvp")
_DIVERGENCES = ("auto", "exact", "hutchinson", None)
#: Images whose values leave [-1, 1] by more than this are refused as mis-scaled.
_RANGE_SLACK = 0.5


class NonFiniteError(FloatingPointError):
    """A trajectory produced NaN/Inf, or an axis collapsed to length zero."""


@dataclass
class VolumeGrowth:
    """Result of :func:`track_volume_growth`; every tensor is on the CPU, float64.

    Attributes:
        log_growth: (B,) cumulative log volume growth log l_T (Eq. 13).
        prior_logp: (B,) log N(x_T; 0, I) at the trajectory's end.
        divergence_integral: (B,) sum_k dt nabla.f(x_k, t_k), or None.
        generation_logp: (B,) prior_logp + divergence_integral, or None.
        curve: (B, steps) log l_t after every step, or None.
        failed: (B,) bool, images whose trajectory went non-finite (on_error="mark").
        errors: {image index: message} for the failed images.
        settings: the settings used (for provenance).
    """

    log_growth: torch.Tensor
    prior_logp: torch.Tensor
    divergence_integral: torch.Tensor | None
    generation_logp: torch.Tensor | None
    curve: torch.Tensor | None
    failed: torch.Tensor
    errors: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.log_growth.shape[0]


def track_volume_growth(
    model,
    images: torch.Tensor,
    *,
    axes: int = 1,
    sigma: float = 0.05,
    steps: int = 1,
    t_min: float | None = None,
    method: str = "fd",
    stretch: str = "norm",
    seed: int = 0,
    batch_size: int | None = None,
    return_curve: bool = False,
    divergence: str | None = None,
    probes: int = 1,
    on_error: str = "raise",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    eval_batch: int | None = None,
    autocast: torch.dtype | None = None,
    progress: bool = False,
) -> VolumeGrowth:
    """Log volume growth of each image under the PF-ODE (the paper's Algorithm 1).

    Args:
        model: a score model (anything with ``eps(x, t)``, see :mod:`curate.models.base`).
        images: (B, C, H, W) in [-1, 1].
        axes: N, the number of orthonormal axes (1 <= N <= D = C*H*W).
        sigma: radius of the sphere of surrounding points (``method="fd"``).
        steps: T, Euler steps on the model's SDE grid t_k = t_min + k dt (the paper's:
            dt = 1/1000, 1..1000 steps).
        t_min: where the trajectories start (default: the SDE's, 1e-3).
        method: ``"fd"`` (Algorithm 1) or ``"jvp"`` (its exact sigma -> 0 limit).
        stretch: ``"norm"``: each axis's stretch is its length after the step, as in
            Eq. (13). ``"volume"``: its length orthogonal to the larger axes (R's
            diagonal in the Gram-Schmidt), so the sum is the exact log volume of the
            N-dimensional parallelepiped; with N = D it is log|det| of the Euler map.
            The two agree to first order in dt; "norm" is never smaller (Hadamard).
        seed: run seed; each image's directions derive from it and the image bytes.
        batch_size: images per chunk (bounds memory); default from ``eval_batch``.
        return_curve: also return log l_t after every step, (B, steps).
        divergence: None (the default: skip it, ``generation_logp`` is None and the
            call costs only Algorithm 1's evaluations), ``"auto"`` (the model's exact
            ``divergence`` if it has one, else Hutchinson), ``"exact"`` (model's, or D
            Jacobian-vector products) or ``"hutchinson"`` (``probes`` Rademacher probes
            per step: one JVP each).
        on_error: ``"raise"`` stops at a non-finite trajectory naming image and step;
            ``"mark"`` records it in ``failed``/``errors`` (scores NaN) and goes on.
        dtype: dtype of the trajectories (default: the images' dtype). float64 avoids
            the cancellation of finite differences where the score is large.
        device: where to compute (default: the model's device, else the images').
        eval_batch: most rows per network call (default 256 on CPU; on CUDA, what fits
            in half the free memory, measured with one probe call, 256..65536).
            On a CUDA out-of-memory error the chunk is retried with half the images
            and half the rows per call, down to one image.
        autocast: run the network under ``torch.autocast`` with this dtype (e.g.
            ``torch.bfloat16`` on a GPU); trajectories stay in ``dtype``. ``curate bench``
            measures its error in log growth against float32.
        progress: show a rich progress bar.

    Returns:
        :class:`VolumeGrowth` with (B,) float64 tensors on the CPU.
    """
    base.check_model(model)
    vp = sde.of(model)
    t_min = vp.t_min if t_min is None else t_min
    dtype = dtype or images.dtype if isinstance(images, torch.Tensor) else dtype
    _validate(images, axes=axes, sigma=sigma, steps=steps, t_min=t_min, method=method,
              stretch=stretch, divergence=divergence, probes=probes, on_error=on_error, dtype=dtype, vp=vp)
    device = torch.device(device) if device is not None else base.model_device(model) or images.device
    B = images.shape[0]
    if eval_batch is None:
        eval_batch = (_cuda_eval_batch(model, images[:1].to(device=device, dtype=dtype), autocast)
                      if device.type == "cuda" else 256)
    rows_per_image = axes + 1 if method == "fd" else axes
    if batch_size is None:
        batch_size = max(1, eval_batch // rows_per_image)
    if divergence == "auto":
        divergence = "exact" if callable(getattr(model, "divergence", None)) else "hutchinson"
    keys = _rng.image_keys(images, seed)

    out = {k: torch.empty(B, dtype=torch.float64) for k in ("log_growth", "prior", "div")}
    curve = torch.empty((B, steps), dtype=torch.float64) if return_curve else None
    failed = torch.zeros(B, dtype=torch.bool)
    errors: dict[int, str] = {}
    cfg = dict(axes=axes, sigma=float(sigma), steps=steps, t_min=float(t_min), method=method,
               stretch=stretch, divergence=divergence, probes=probes, eval_batch=eval_batch, autocast=autocast)

    with _progress.progress(B * steps, "volume growth (image-steps)", progress) as advance:
        start = 0
        while start < B:
            sl = slice(start, min(B, start + batch_size))
            x = images[sl].to(device=device, dtype=dtype)
            try:
                with torch.no_grad():  # forward-mode jvp still works; no graphs are kept
                    res = _track_chunk(model, x, keys[sl].to(device),
                                       advance=lambda n=1, b=x.shape[0]: advance(n * b), **cfg)
            except torch.OutOfMemoryError:
                if batch_size == 1 and cfg["eval_batch"] == 1:
                    raise
                # Answer an out-of-memory error with a smaller chunk, not a crash.
                batch_size = max(1, batch_size // 2)
                cfg["eval_batch"] = max(1, cfg["eval_batch"] // 2)
                del x
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            out["log_growth"][sl] = res["log_growth"].cpu()
            out["prior"][sl] = res["prior"].cpu()
            out["div"][sl] = res["div"].cpu()
            if curve is not None:
                curve[sl] = res["curve"].cpu()
            for i, (step, what) in res["bad"].items():
                msg = f"image {start + i}: {what} at step {step} (t = {t_min + step * vp.dt:.4g})"
                if on_error == "raise":
                    raise NonFiniteError(msg + "; pass on_error='mark' to score the other images anyway")
                failed[start + i] = True
                errors[start + i] = msg
            start = sl.stop

    for k in ("log_growth", "prior", "div"):
        out[k][failed] = float("nan")
    if curve is not None:
        curve[failed] = float("nan")
    div = out["div"] if divergence is not None else None
    return VolumeGrowth(
        log_growth=out["log_growth"],
        prior_logp=out["prior"],
        divergence_integral=div,
        generation_logp=out["prior"] + div if div is not None else None,
        curve=curve,
        failed=failed,
        errors=errors,
        settings=dict(cfg, seed=seed, dtype=str(dtype).replace("torch.", ""),
                  autocast=str(autocast).replace("torch.", "") if autocast else None),
    )


# --------------------------------------------------------------------------- internals


def _validate(images, *, axes, sigma, steps, t_min, method, stretch, divergence, probes, on_error, dtype, vp):
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (B = 0)")
    if not (dtype.is_floating_point if isinstance(dtype, torch.dtype) else False):
        raise TypeError(f"trajectories need a floating dtype, got {dtype}")
    flat = images.detach().reshape(images.shape[0], -1)
    bad = ~torch.isfinite(flat).all(1)
    if bad.any():
        idx = bad.nonzero().flatten().tolist()
        raise ValueError(f"images {idx[:10]} contain NaN or Inf")
    peak = flat.abs().amax(1)
    if (peak > 1 + _RANGE_SLACK).any():
        i = int(peak.argmax())
        raise ValueError(
            f"image {i} has values up to {float(peak[i]):.3g}; images must be scaled to [-1, 1] "
            "(e.g. x / 127.5 - 1 for uint8)"
        )
    D = flat.shape[1]
    if not isinstance(axes, int) or not 1 <= axes <= D:
        raise ValueError(f"axes must be an integer in 1..D = {D} (the image dimension), got {axes!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    if not 0 < t_min < 1:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min!r}")
    max_steps = vp.max_steps(t_min)
    if not isinstance(steps, int) or not 1 <= steps <= max_steps:
        raise ValueError(f"steps must be an integer in 1..{max_steps} (grid of {vp.dt:g} from t_min = {t_min}), "
                         f"got {steps!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if stretch not in ("norm", "volume"):
        raise ValueError(f"stretch must be 'norm' or 'volume', got {stretch!r}")
    if divergence not in _DIVERGENCES:
        raise ValueError(f"divergence must be one of {_DIVERGENCES}, got {divergence!r}")
    if not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    if on_error not in ("raise", "mark"):
        raise ValueError(f"on_error must be 'raise' or 'mark', got {on_error!r}")
