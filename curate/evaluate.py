"""How well does a score detect memorization? Metrics, a baseline, and a method table.

Convention: every score is oriented so that *higher means more reproducible*
(more memorized, more likely trained). The positive group is the memorized / trained
one. All metrics take the two groups' scores as 1-D arrays or tensors; NaN scores
(images a tracker failed on) are dropped and counted.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

# The denoising loss and the tracker's cost, where the scores define them.
from curate.scores.denoising import denoising_loss  # noqa: F401
from curate.scores.volume import network_evaluations  # noqa: F401


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


def run_methods(model, images: torch.Tensor, specs: dict[str, dict], *, seed: int = 0, progress: bool = False,
                log=None, cache: dict | None = None) -> dict[str, MethodScores]:
    """Score ``images`` (B, C, H, W) with every method in ``specs`` (name -> spec dict).

    A spec names a registered score kind (``score``; without one, the paper's tracker
    ``"volume_growth"``, as the paper recipes' presets are written; see
    :mod:`curate.scores`) and that kind's settings; ``label`` names it in tables and
    ``curve = true`` keeps a tracker kind's log l_t after every step. Kinds of one group
    with equal settings (``volume_growth``, ``divergence`` and ``generation_logp`` of one
    tracker run) share one computation, also across calls that pass the same ``cache``
    dict. Failed images score NaN.
    """
    import time

    from curate import scores

    D = images[0].numel()
    runs: dict[tuple, tuple] = {} if cache is None else cache
    out: dict[str, MethodScores] = {}
    for name, spec in specs.items():
        spec = dict(spec)
        label = spec.pop("label", name)
        curve = bool(spec.pop("curve", False))
        try:
            kind = scores.get(spec.pop("score", "volume_growth"))
        except ValueError as e:
            raise ValueError(f"method {name!r}: {e}") from None
        if "axes" in spec:  # a preset's N may exceed a small image's D: all D axes then
            spec["axes"] = min(int(spec["axes"]), D)
        params = kind.resolve(spec, what=f"method {name!r}")
        if curve and kind.group != "tracker":
            raise ValueError(f"method {name!r}: curve = true needs a volume-growth score, not {kind.name!r}")
        text = kind.describe(params, D)
        key = (kind.group or kind.name, tuple(sorted(params.items())), curve)
        if key not in runs:
            if log:
                log(f"  scoring: {kind.name} ({text})")
            t0 = time.perf_counter()
            extra = {"return_curve": True} if curve else {}
            res = kind.scorer(model, images, seed=seed, device=None, progress=progress, **params, **extra)
            runs[key] = (res, (time.perf_counter() - t0) / images.shape[0])
        res, sec = runs[key]
        values = res.extra[kind.name] if kind.group else res.values
        values = values.clone()
        values[list(res.errors)] = float("nan")
        out[name] = MethodScores(name, label, text, values, nfe=kind.nfe(D, params, model), seconds=sec,
                                 curve=res.extra.get("curve"), n_failed=len(res.errors))
    return out
