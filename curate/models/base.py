"""The one score-model interface, and what curate asks of any model.

Any object with a method ``eps(x, t)`` is a score model: ``x`` has shape
(B, C, H, W) in data units ([-1, 1] at t = 0), ``t`` has shape (B,) with continuous
times in [t_min, 1], and the return value is the noise prediction, shaped like ``x``.
Everything else (the score, the PF-ODE drift) is derived here, in one place, with the
model's own SDE (:func:`curate.sde.of`).

Optional extras a model may provide:

* ``divergence(x, t) -> (B,)``: the exact divergence of the *score* nabla . s.
* ``dtype``: the dtype the model computes in; inputs are cast to it and outputs
  cast back, so trajectories can be kept in float64 around a float32 network.
* ``device``, ``image_shape`` (C, H, W), ``sde`` (a :class:`curate.sde.VPSDE`).

:func:`model_device`, :func:`model_dtype` and :func:`image_shape` answer those three
questions for curate's U-Net, :class:`~curate.models.ExactScore`, the adapters and
any network with parameters; the tracker, sampler, brain and CLI all ask here.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from curate import sde as _sde


@runtime_checkable
class ScoreModel(Protocol):
    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - protocol
        ...


def _tensors(model):
    """The model's parameters, else the tensors it holds (ExactScore's training set)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        yield from params()
        return
    for v in vars(model).values() if hasattr(model, "__dict__") else ():
        if isinstance(v, torch.Tensor):
            yield v


def model_dtype(model) -> torch.dtype | None:
    """The dtype a model computes in: its ``dtype`` attribute or its first parameter's."""
    dt = getattr(model, "dtype", None)
    if isinstance(dt, torch.dtype):
        return dt
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.dtype
    return None


def model_device(model) -> torch.device | None:
    """Where a model computes: its ``device`` attribute, its first parameter's or stored
    tensor's device; None when it holds no tensors."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for t in _tensors(model):
        return t.device
    return None


def image_shape(model) -> tuple[int, int, int] | None:
    """(C, H, W) a model was built for, or None when it does not say.

    Read from ``model.image_shape``, a curate U-Net's config, a diffusers UNet's
    ``sample_size``/``in_channels``, or the same on the network an adapter wraps.
    """
    for net in (getattr(model, "module", model), getattr(model, "unet", None), getattr(model, "net", None)):
        if net is None:
            continue
        shape = getattr(net, "image_shape", None)
        if shape is not None:
            return tuple(int(s) for s in shape)
        cfg = getattr(net, "config", None)
        if isinstance(cfg, dict):
            c, s = cfg.get("channels", cfg.get("in_channels")), cfg.get("image_size", cfg.get("sample_size"))
        else:
            c, s = getattr(cfg, "in_channels", None), getattr(cfg, "sample_size", None)
        if c is not None and s is not None:
            h, w = (s, s) if isinstance(s, int) else tuple(s)
            return int(c), int(h), int(w)
    return None


def check_model(model) -> None:
    """Raise a clear TypeError unless ``model`` has a callable ``eps(x, t)``."""
    if not callable(getattr(model, "eps", None)):
        raise TypeError(
            f"{type(model).__name__} is not a score model: it needs a method eps(x, t) "
            "taking x of shape (B, C, H, W) and t of shape (B,). Wrap a plain network with "
            "curate.models.EpsNetAdapter."
        )


def check_images_fit(model, shape: tuple[int, int, int], what: str = "these images") -> None:
    """ValueError when a model says it was built for other images than (C, H, W) ``shape``."""
    want = image_shape(model)
    if want is not None and tuple(want) != tuple(shape):
        raise ValueError(
            f"the model was built for images of {want[0]} channel(s), {want[1]}x{want[2]}, but "
            f"{what} are {shape[0]} channel(s), {shape[1]}x{shape[2]}; use a model trained on this "
            "data, or convert the images (size=/channels= with resize=True)"
        )


def eps(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Call ``model.eps`` in the model's dtype and return the result in ``x``'s dtype."""
    md = model_dtype(model)
    if md is not None and md != x.dtype:
        return model.eps(x.to(md), t.to(md)).to(x.dtype)
    return model.eps(x, t)


def score(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s(x, t) = -eps(x, t) / sigma_t;  x: (B, C, H, W), t: (B,)."""
    st = _sde.of(model).sigma(t).reshape(-1, *([1] * (x.dim() - 1)))
    return -eps(model, x, t) / st


def drift(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """PF-ODE drift f(x, t) = -beta/2 (x + s(x, t));  x: (B, C, H, W), t: (B,)."""
    return _sde.of(model).drift(x, t, score(model, x, t))
