"""The paper's volume growth along the PF-ODE, and its two exact relatives, as score kinds.

All three come from one tracker run (:func:`curate.track_volume_growth`):

* ``log_growth``: log l_T, the cumulative log volume growth of N axes (Algorithm 1, Eq. 13);
* ``divergence``: int nabla.f dt along the trajectory, the full-dimensional log volume
  growth (Algorithm 1's N = D limit, by the instantaneous change of variables);
* ``generation_logp``: log N(x_T; 0, I) + int nabla.f dt, the PF-ODE log-likelihood of the
  image (Song et al. 2021) when the steps reach t = 1.

They share the ``tracker`` group: kinds with equal settings share one run in
:func:`curate.evaluate.run_methods`, and a run's ``extra`` holds all of them.
"""
from __future__ import annotations

import torch

from curate.scores._registry import Param, Scored, ScoreKind, register
from curate.sde import VP

DIVERGENCES = ("auto", "exact", "hutchinson")

_COMMON = (
    Param("method", "fd", "fd: Algorithm 1 (finite differences of radius sigma); jvp: its exact "
          "sigma -> 0 limit (tangent vectors by forward-mode autodiff)", choices=("fd", "jvp"),
          attr="tracker_method"),
    Param("stretch", "norm", "norm: each axis's length (Eq. 13); volume: the Gram-Schmidt diagonal "
          "(the exact N-dimensional log volume)", choices=("norm", "volume")),
    Param("axes", 1, "N, the number of orthonormal axes (at most D)", low=1),
    Param("sigma", 0.05, "radius of the sphere of surrounding points (fd)", low=0.0, open_low=True),
    Param("steps", 1, "T, Euler steps on the SDE's grid (dt = 1/1000)", low=1, high=VP.max_steps()),
    Param("t_min", VP.t_min, "time of the first step", low=0.0, high=1.0, open_low=True, open_high=True),
    Param("probes", 1, "Hutchinson probes per step (divergence='hutchinson')", low=1),
    Param("dtype", "float64", "dtype of the trajectories (float32 finite differences cancel where "
          "the score is large)", choices=("float64", "float32")),
)


def _divergence_param(default: str, choices: tuple) -> Param:
    return Param("divergence", default, "how int div f dt is integrated: exact (the model's own, "
                 "or D JVPs), hutchinson (probes JVPs per step), auto (exact when the model has "
                 "it)" + (", none (skip: only Algorithm 1's cost)" if "none" in choices else ""),
                 choices=choices)


def track(model, images: torch.Tensor, *, seed: int, device, progress=False, method, stretch, axes, sigma,
          steps, t_min, probes, dtype, divergence, return_curve: bool = False) -> Scored:
    """One tracker run; values = log l_T, extra = every output the run computed, by kind name (and
    ``curve``, (B, steps) log l_t, with ``return_curve``)."""
    from curate.volume import track_volume_growth

    res = track_volume_growth(
        model, images, axes=axes, sigma=sigma, steps=steps, t_min=t_min,
        method=method, stretch=stretch, seed=seed, divergence=None if divergence == "none" else divergence,
        probes=probes, on_error="mark", dtype=getattr(torch, dtype), device=device,
        return_curve=return_curve, progress=progress)
    extra = {"volume_growth": res.log_growth, "prior_logp": res.prior_logp}
    if res.curve is not None:
        extra["curve"] = res.curve
    if res.divergence_integral is not None:
        extra.update(divergence=res.divergence_integral, generation_logp=res.generation_logp)
    errors = {i: "tracker: " + str(res.errors.get(i, "non-finite trajectory"))
              for i in range(images.shape[0]) if bool(res.failed[i])}
    return Scored(res.log_growth, errors, extra)


def network_evaluations(method: str, *, axes: int = 1, steps: int = 1, dim: int | None = None,
                        divergence: str | None = None, probes: int = 1) -> int:
    """Network evaluations per image of one tracker run (a JVP or VJP counts as one).

    fd: the centre and N surroundings each step, T (N + 1). jvp: the centre plus N JVPs,
    T (N + 1). A divergence adds D JVPs per step when exact, ``probes`` when Hutchinson,
    none when the model has a closed-form divergence ("closed").
    """
    base = steps * (axes + 1)
    if method not in ("fd", "jvp"):
        raise ValueError(f"method must be 'fd' or 'jvp', got {method!r}")
    if divergence in (None, "none", "closed"):
        return base
    if divergence == "exact":
        if dim is None:
            raise ValueError("an exact divergence needs dim")
        return base + steps * dim
    if divergence == "hutchinson":
        return base + steps * probes
    raise ValueError(f"unknown divergence {divergence!r}")


def _nfe(dim: int, p: dict, model) -> float:
    div = p["divergence"]
    if div in ("auto", "exact") and callable(getattr(model, "divergence", None)):
        div = "closed"
    elif div == "auto":
        div = "hutchinson"
    return network_evaluations(p["method"], axes=min(p["axes"], dim), steps=p["steps"], dim=dim,
                               divergence=div, probes=p["probes"])


def _text(p: dict, dim: int) -> str:
    axes = min(p["axes"], dim)
    parts = [p["method"], f"N={axes}" + (" (=D)" if axes == dim else ""), f"T={p['steps']}"]
    if p["method"] == "fd":
        parts.append(f"sigma={p['sigma']}")
    if p["divergence"] != "none":
        parts.append(f"div={p['divergence']}" + (f"x{p['probes']}" if p["divergence"] == "hutchinson" else ""))
    if p["dtype"] != "float64":
        parts.append(p["dtype"])
    return ", ".join(parts)


def _picker(name: str):
    def scorer(model, images, **kw) -> Scored:
        out = track(model, images, **kw)
        return Scored(out.extra[name], out.errors, out.extra)
    return scorer


VOLUME_GROWTH = register(ScoreKind(
    name="volume_growth", brain_method="curate_volume_growth", group="tracker", text=_text, aliases=("log_growth",),
    summary="log volume growth log l_T of N axes over T Euler steps (higher = grows faster = easier to reproduce)",
    source="Hasegawa & Yasuda 2025, Algorithm 1 / Eq. 13",
    params=_COMMON + (_divergence_param("none", ("none",) + DIVERGENCES),),
    scorer=track, nfe=_nfe, extras=("generation_logp",),
))

DIVERGENCE = register(ScoreKind(
    name="divergence", brain_method="curate_volume_growth", group="tracker", text=_text,
    summary="int div f dt over T steps: the full-dimensional log volume growth (Algorithm 1 with N = D)",
    source="instantaneous change of variables (Chen et al. 2018) on the paper's PF-ODE",
    params=_COMMON + (_divergence_param("auto", DIVERGENCES),),
    scorer=_picker("divergence"), nfe=_nfe, extras=("generation_logp",),
))

GENERATION_LOGP = register(ScoreKind(
    name="generation_logp", brain_method="curate_volume_growth", group="tracker", text=_text,
    summary="PF-ODE log-likelihood log N(x_T; 0, I) + int div f dt (meaningful when T reaches t = 1)",
    source="Song et al. 2021, probability-flow ODE likelihood",
    params=_COMMON + (_divergence_param("auto", DIVERGENCES),),
    scorer=_picker("generation_logp"), nfe=_nfe, extras=("generation_logp",),
))
