"""How well does a score detect memorization? Metrics, a baseline, and a method table.

Convention: every score is oriented so that *higher means more reproducible*
(more memorized, more likely trained). The positive group is the memorized / trained
one. All metrics take the two groups' scores as 1-D arrays or tensors; NaN scores
(images a tracker failed on) are dropped and counted.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


def _np(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a


def _finite(x, name: str) -> np.ndarray:
    a = _np(x, name)
    a = a[~np.isnan(a)]
    if a.size == 0:
        raise ValueError(f"{name} has no (non-NaN) scores")
    return a


def auroc(pos, neg) -> float:
    """Area under the ROC curve of ``pos`` (positives) against ``neg``, ties counted 1/2.

    Equals P(score_pos > score_neg) + 0.5 P(equal): the Mann-Whitney U over n_pos n_neg,
    computed from mid-ranks of the pooled scores.
    """
    from scipy.stats import rankdata

    p, n = _finite(pos, "pos"), _finite(neg, "neg")
    ranks = rankdata(np.concatenate([p, n]))  # average ranks for ties
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * n.size))


def tpr_at_fpr(pos, neg, fpr: float = 0.01) -> float:
    """Largest true-positive rate over thresholds ``score >= tau`` whose false-positive rate is <= ``fpr``.

    No interpolation: with 100 negatives, 1 % FPR allows exactly one negative at or
    above the threshold; with fewer than 100 it allows none.
    """
    p, n = _finite(pos, "pos"), _finite(neg, "neg")
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    allowed = math.floor(fpr * n.size + 1e-9)  # negatives allowed at or above tau
    neg_desc = np.sort(n)[::-1]
    if allowed >= n.size:
        return 1.0
    # tau must exceed the (allowed+1)-th largest negative; the best such tau admits every
    # positive strictly above it.
    bar = neg_desc[allowed]
    return float((p > bar).mean())


def spearman(scores, counts) -> tuple[float, float]:
    """Spearman rank correlation (rho, two-sided p) of scores with reproduction counts."""
    from scipy.stats import spearmanr

    s, c = _np(scores, "scores"), _np(counts, "counts")
    if s.shape != c.shape:
        raise ValueError(f"scores {s.shape} and counts {c.shape} differ in length")
    keep = ~np.isnan(s)
    if np.unique(c[keep]).size < 2 or np.unique(s[keep]).size < 2:
        return math.nan, math.nan
    res = spearmanr(s[keep], c[keep])
    return float(res.statistic), float(res.pvalue)


def welch_t(pos, neg) -> tuple[float, float]:
    """Welch's unequal-variance t-test of pos against neg: (t, two-sided p)."""
    from scipy.stats import ttest_ind

    p, n = _finite(pos, "pos"), _finite(neg, "neg")
    if p.size < 2 or n.size < 2:
        return math.nan, math.nan
    res = ttest_ind(p, n, equal_var=False)
    return float(res.statistic), float(res.pvalue)


# ---------------------------------------------------------------- the baseline ---

def _image_seed(image: torch.Tensor, seed: int) -> int:
    """A 63-bit seed from an image's float32 bytes and a run seed (batch independent)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


@torch.no_grad()
def denoising_loss(
    model, images: torch.Tensor, *, t: float = 0.01, draws: int = 4, seed: int = 0,
    batch_size: int = 256, device=None,
) -> torch.Tensor:
    """The denoising-loss baseline (B,) float64 CPU: mean over ``draws`` noise draws of
    the per-pixel mean of (eps_theta(alpha y + sigma z, t) - z)^2.

    images: (B, C, H, W) in [-1, 1]. Each image's draws come from a generator seeded by
    its own bytes and ``seed``, so a score does not depend on batching or order. A
    memorized image has a *low* loss; as a detection score use ``-denoising_loss``.
    """
    from curate import sde
    from curate.models import base

    base.check_model(model)
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    if device is None:
        device = images.device
    out = torch.empty(images.shape[0], dtype=torch.float64)
    tt = torch.tensor(float(t), dtype=torch.float64)
    vp = sde.of(model)
    a, s = float(vp.alpha(tt)), float(vp.sigma(tt))
    per = max(1, batch_size // draws)
    for start in range(0, images.shape[0], per):
        y = images[start:start + per]
        z = torch.stack([
            torch.randn((draws, *y.shape[1:]), generator=torch.Generator().manual_seed(_image_seed(img, seed)),
                        dtype=torch.float32)
            for img in y
        ]).to(device)  # (b, draws, C, H, W)
        yy = y.to(device=device, dtype=torch.float32).unsqueeze(1)
        x = (a * yy + s * z).flatten(0, 1)
        e = base.eps(model, x, torch.full((x.shape[0],), float(t), dtype=x.dtype, device=device))
        err = (e.to(torch.float64) - z.flatten(0, 1).to(torch.float64)).pow(2).flatten(1).mean(1)
        out[start:start + y.shape[0]] = err.reshape(y.shape[0], draws).mean(1).cpu()
    return out


# ------------------------------------------------------------- method table ---

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
    if divergence in (None, "closed"):
        return base
    if divergence == "exact":
        if dim is None:
            raise ValueError("an exact divergence needs dim")
        return base + steps * dim
    if divergence == "hutchinson":
        return base + steps * probes
    raise ValueError(f"unknown divergence {divergence!r}")


@dataclass
class MethodResult:
    """One row of the method table: a scoring method's detection quality and cost."""

    name: str
    settings: str
    nfe: float                 # network evaluations per image
    seconds: float | None      # measured wall seconds per image
    n_pos: int
    n_neg: int
    auroc: float
    tpr_at_1fpr: float
    mean_pos: float
    mean_neg: float
    t: float
    p: float
    spearman: float | None = None
    spearman_p: float | None = None
    n_failed: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def evaluate_method(
    name: str, scores, positive, *, nfe: float, seconds: float | None = None, settings: str = "",
    counts=None,
) -> MethodResult:
    """Score quality of one method. scores: (B,) higher = more reproducible; positive:
    (B,) bool (memorized / trained); counts: optional (B,) reproduction counts."""
    s = _np(scores, "scores")
    lab = np.asarray(positive.cpu() if isinstance(positive, torch.Tensor) else positive).astype(bool).reshape(-1)
    if s.shape != lab.shape:
        raise ValueError(f"scores {s.shape} and labels {lab.shape} differ in length")
    if lab.all() or not lab.any():
        raise ValueError("need both positive and negative images")
    pos, neg = s[lab], s[~lab]
    t, p = welch_t(pos, neg)
    rho = rho_p = None
    if counts is not None:
        rho, rho_p = spearman(s, counts)
    return MethodResult(
        name=name, settings=settings, nfe=float(nfe), seconds=seconds,
        n_pos=int(np.isfinite(pos).sum()), n_neg=int(np.isfinite(neg).sum()),
        auroc=auroc(pos, neg), tpr_at_1fpr=tpr_at_fpr(pos, neg, 0.01),
        mean_pos=float(np.nanmean(pos)), mean_neg=float(np.nanmean(neg)), t=t, p=p,
        spearman=rho, spearman_p=rho_p, n_failed=int(np.isnan(s).sum()),
    )


def best_method(rows: list[MethodResult]) -> MethodResult:
    """Highest AUROC; among equals, the cheapest (fewest network evaluations)."""
    if not rows:
        raise ValueError("no methods to choose from")
    return max(rows, key=lambda r: (r.auroc, -r.nfe))


def _fmt(x, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def method_table(rows: list[MethodResult], *, title: str = "scoring methods",
                 pos_label: str = "positive", neg_label: str = "negative"):
    """A rich Table comparing methods at their cost; the best AUROC is marked with *."""
    from rich.table import Table

    best = best_method(rows).name if rows else None
    show_rho = any(r.spearman is not None for r in rows)
    table = Table(title=title)
    table.add_column("method")
    table.add_column("settings")
    table.add_column("NFE/img", justify="right")
    table.add_column("s/img", justify="right")
    table.add_column("AUROC", justify="right")
    table.add_column("TPR@1%FPR", justify="right")
    table.add_column(f"mean {pos_label}", justify="right")
    table.add_column(f"mean {neg_label}", justify="right")
    table.add_column("Welch t", justify="right")
    table.add_column("p", justify="right")
    if show_rho:
        table.add_column("Spearman", justify="right")
    for r in rows:
        cells = [
            r.name + (" *" if r.name == best else ""), r.settings, f"{r.nfe:,.0f}", _fmt(r.seconds, ".4f"),
            _fmt(r.auroc), _fmt(r.tpr_at_1fpr), _fmt(r.mean_pos, ".4g"), _fmt(r.mean_neg, ".4g"),
            _fmt(r.t, ".2f"), _fmt(r.p, ".2e"),
        ]
        if show_rho:
            cells.append(_fmt(r.spearman))
        table.add_row(*cells)
    return table


# ------------------------------------------------------ running the methods ---

#: Tracker outputs a method can score by (all oriented higher = more reproducible).
TRACK_SCORES = ("log_growth", "divergence_integral", "generation_logp", "prior_logp")


@dataclass
class MethodScores:
    """One method's scores of a set of images: scores (B,) float64, higher = more reproducible."""

    name: str
    label: str
    settings: str
    scores: torch.Tensor
    nfe: float
    seconds: float          # wall seconds per image (shared between methods of one run)
    curve: torch.Tensor | None = None  # (B, steps) log l_t, when the spec asks for it
    n_failed: int = 0


def _spec_settings(spec: dict, axes: int, D: int) -> str:
    if spec.get("kind", "track") == "denoise":
        return f"t={spec.get('t', 0.01)}, {spec.get('draws', 4)} draws"
    parts = [spec.get("method", "fd"), f"N={axes}" + (" (=D)" if axes == D else ""), f"T={spec.get('steps', 1)}"]
    if spec.get("method", "fd") == "fd":
        parts.append(f"sigma={spec.get('sigma', 0.05)}")
    div = spec.get("divergence", "none")
    if div != "none":
        parts.append(f"div={div}" + (f"x{spec.get('probes', 1)}" if div == "hutchinson" else ""))
    return ", ".join(parts)


def run_methods(model, images: torch.Tensor, specs: dict[str, dict], *, seed: int = 0, progress: bool = False,
                log=None, cache: dict | None = None) -> dict[str, MethodScores]:
    """Score ``images`` (B, C, H, W) with every method in ``specs`` (name -> spec dict).

    A spec is ``kind = "track"`` (default) with tracker settings ``method`` ("fd" or
    "jvp"), ``axes`` (clamped to D), ``steps``, ``sigma``, ``divergence`` ("none",
    "auto", "exact", "hutchinson"), ``probes``, ``dtype`` ("float64" or "float32"),
    ``curve`` (keep log l_t per step) and ``score`` (one of :data:`TRACK_SCORES`); or
    ``kind = "denoise"`` with ``t`` and ``draws`` (score = -denoising loss). Specs
    with identical tracker settings share one run (also across calls that pass the same
    ``cache`` dict). Failed images score NaN.
    """
    import time

    from curate.volume import track_volume_growth

    D = images[0].numel()
    runs: dict[tuple, tuple] = {} if cache is None else cache
    out: dict[str, MethodScores] = {}
    for name, spec in specs.items():
        kind = spec.get("kind", "track")
        label = spec.get("label", name)
        if kind == "denoise":
            t0 = time.perf_counter()
            loss = denoising_loss(model, images, t=float(spec.get("t", 0.01)), draws=int(spec.get("draws", 4)),
                                  seed=seed)
            sec = (time.perf_counter() - t0) / images.shape[0]
            out[name] = MethodScores(name, label, _spec_settings(spec, 0, D), -loss,
                                     nfe=int(spec.get("draws", 4)), seconds=sec)
            continue
        if kind != "track":
            raise ValueError(f"method {name!r}: kind must be 'track' or 'denoise', got {kind!r}")
        score = spec.get("score", "log_growth")
        if score not in TRACK_SCORES:
            raise ValueError(f"method {name!r}: score must be one of {TRACK_SCORES}, got {score!r}")
        axes = min(int(spec.get("axes", 1)), D)
        div = spec.get("divergence", "none")
        if score in ("divergence_integral", "generation_logp") and div == "none":
            raise ValueError(f"method {name!r}: score {score!r} needs a divergence ('auto', 'exact' or 'hutchinson')")
        key = (spec.get("method", "fd"), axes, int(spec.get("steps", 1)), float(spec.get("sigma", 0.05)), div,
               int(spec.get("probes", 1)), spec.get("dtype", "float64"), bool(spec.get("curve", False)))
        if key not in runs:
            if log:
                log(f"  tracking: {_spec_settings(spec, axes, D)}")
            t0 = time.perf_counter()
            res = track_volume_growth(
                model, images, axes=axes, steps=key[2], sigma=key[3], method=key[0],
                divergence=None if div == "none" else div, probes=key[5], seed=seed,
                dtype=getattr(torch, key[6]), return_curve=key[7], on_error="mark", progress=progress,
            )
            runs[key] = (res, (time.perf_counter() - t0) / images.shape[0])
        res, sec = runs[key]
        closed = div in ("auto", "exact") and callable(getattr(model, "divergence", None))
        nfe = network_evaluations(key[0], axes=axes, steps=key[2], dim=D,
                                  divergence=None if div == "none" else ("closed" if closed else
                                                                         ("exact" if div == "exact" else "hutchinson")),
                                  probes=key[5])
        out[name] = MethodScores(name, label, _spec_settings(spec, axes, D), getattr(res, score).clone(), nfe=nfe,
                                 seconds=sec, curve=res.curve, n_failed=int(res.failed.sum()))
    return out
