"""How well can *any* score predict reproduction counts measured from m samples? The
split-half noise ceiling, and a score judged on the same footing.

The generated samples are split by index into half A (even) and half B (odd). Each half
gives every unique training image a count (c_A, c_B), each from about m/2 samples.

**Label rule**: an image is *reproduced* in a half when that half copies it at least
once (c >= 1).

**Ceiling**: the counts of half A used as a score for the labels of half B -- AUROC of
c_A, reproduced-in-B vs not, and Spearman's rho of c_A with c_B -- averaged with the same
in the other direction (B predicts A). A score computed without any samples cannot be
expected to beat a second independent draw of the very thing it predicts: the ceiling
says how much of a score's shortfall is sampling noise in the labels.

**The score on the same footing**: its AUROC against the labels of half B (and of half
A, averaged) and its Spearman with each half's counts (averaged), so the two numbers
compare like with like.

**Correlation ceiling** (classical test theory): the split-half rho_hh, stepped up by
Spearman-Brown to the reliability of the counts of all m samples, rel = 2 rho_hh /
(1 + rho_hh); no score correlates with those counts above about sqrt(rel)
(``max_spearman``; exact for Pearson's r, and the true rate itself reaches it within 0.03
for Spearman's rho in the tests).

Caveat, measured (docs/audit.md): when copies are rare most images have count 0 in a
half, so half A's counts are a score with massive ties; a continuous score can then
reach a *higher* AUROC than the split-half "ceiling". The AUROC ceiling says how well a
second draw of counts predicts, not a bound on every score; the correlation ceiling is a bound.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch


def halves(index) -> np.ndarray:
    """(m,) bool: True for half A (even sample index), False for half B (odd)."""
    return np.asarray(index, dtype=np.int64) % 2 == 0


def split_counts(mem, criterion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A :class:`curate.memorization.Memorization`'s per-training-image copy counts (n,) in
    half A and in half B of its samples (:func:`halves`)."""
    in_a = torch.as_tensor(halves(torch.arange(mem.n_samples)))
    return mem.counts_in(in_a, criterion), mem.counts_in(~in_a, criterion)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def auroc_or_nan(score, labels) -> float:
    """AUROC of ``score`` for bool ``labels`` (ties 1/2); NaN without both classes or scores."""
    from curate.evaluate import auroc

    s, y = _np(score), np.asarray(labels, dtype=bool).reshape(-1)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    if y.all() or not y.any():
        return math.nan
    return auroc(s[y], s[~y])


def spearman_or_nan(a, b) -> float:
    from curate.evaluate import spearman

    return spearman(_np(a), _np(b))[0]


def _mean(*values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


@dataclass
class Ceiling:
    """Split-half ceiling: ``auroc`` and ``spearman`` (each the mean of both directions),
    the per-direction values, and how many images each half labels reproduced."""

    auroc: float
    spearman: float
    auroc_a_to_b: float
    auroc_b_to_a: float
    positives_a: int
    positives_b: int
    n_images: int
    reliability: float = math.nan   # Spearman-Brown: 2 rho / (1 + rho), the counts of all m samples
    max_spearman: float = math.nan  # sqrt(reliability): the most any score can correlate with them

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _min_count(min_count) -> int:
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    return int(min_count)


def noise_ceiling(counts_a, counts_b, min_count: int = 1) -> Ceiling:
    """The ceiling from two halves' counts (g,) over the same g unique images (module doc);
    an image is reproduced in a half when copied there at least ``min_count`` times (1: the
    module's rule; a caller whose labels need a rate passes that rate times the half's size)."""
    a, b = _np(counts_a), _np(counts_b)
    m = _min_count(min_count)
    if a.shape != b.shape:
        raise ValueError(f"the halves' counts differ in length: {a.shape} vs {b.shape}")
    ab = auroc_or_nan(a, b >= m)  # half A's counts as the score, half B's labels
    ba = auroc_or_nan(b, a >= m)
    rho = spearman_or_nan(a, b)
    rel = 2 * rho / (1 + rho) if rho > 0 else math.nan  # Spearman-Brown step-up to all m samples
    return Ceiling(auroc=_mean(ab, ba), spearman=rho, auroc_a_to_b=ab,
                   auroc_b_to_a=ba, positives_a=int((a >= m).sum()), positives_b=int((b >= m).sum()),
                   n_images=int(a.size), reliability=rel, max_spearman=math.sqrt(rel) if rel == rel else math.nan)


def score_on_halves(score, counts_a, counts_b, min_count: int = 1) -> dict:
    """A score judged like the ceiling: AUROC against each half's labels (at least
    ``min_count`` copies) and Spearman with each half's counts, each averaged over the halves."""
    a, b = _np(counts_a), _np(counts_b)
    m = _min_count(min_count)
    au_b, au_a = auroc_or_nan(score, b >= m), auroc_or_nan(score, a >= m)
    rho_a, rho_b = spearman_or_nan(score, a), spearman_or_nan(score, b)
    return {"auroc": _mean(au_a, au_b), "spearman": _mean(rho_a, rho_b), "auroc_labels_a": au_a,
            "auroc_labels_b": au_b}


def precision_at_k(score, labels, k: int) -> float:
    """Share of reproduced images among the k highest scores (NaN scores last; ties by order)."""
    s, y = _np(score), np.asarray(labels, dtype=bool).reshape(-1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = np.where(np.isnan(s), -np.inf, s)
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean()) if top.size else math.nan
