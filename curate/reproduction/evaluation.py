"""How far to trust a risk score on one model: the score against an audit's counts.

Everything is per *unique* training image (one per exact-duplicate group), so an image
planted 32 times counts once. Inputs: the score (g,), and the counts of copies of each
image in half A and half B of the generated samples (:mod:`curate.reproduction.ceiling`).

* ``auroc``: reproduced (copied at least once by all m samples) vs not;
* ``spearman``: rho of the score with the rate (all m samples);
* ``precision_at``: share reproduced among the top-k scores;
* ``ceiling`` and ``on_halves``: the split-half noise ceiling and the score judged the
  same way;
* ``calibration``: isotonic p_reproduce fitted on half A, checked on half B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from curate.reproduction.calibrate import Calibration, check_calibration, fit_isotonic
from curate.reproduction.ceiling import (Ceiling, _np, auroc_or_nan, noise_ceiling, precision_at_k,
                                         score_on_halves, spearman_or_nan)

#: Top-k sizes reported by default (besides k = the number of reproduced images).
DEFAULT_K = (10, 50, 100)


@dataclass
class ScoreEvaluation:
    """A score against an audit (module doc); ``p`` (g,) is p_reproduce per unique image."""

    n_images: int
    n_reproduced: int
    m_a: int
    m_b: int
    auroc: float
    spearman: float
    precision_at: dict
    ceiling: Ceiling
    on_halves: dict
    calibration: object  # CalibrationCheck
    n_unscored: int = 0
    p: np.ndarray = field(default=None, repr=False)       # (g,) p_reproduce (fit on half A)
    fit: Calibration | None = field(default=None, repr=False)
    scores: np.ndarray = field(default=None, repr=False)  # (g,) the score per unique image
    counts: np.ndarray = field(default=None, repr=False)  # (g,) copies by all m samples

    def to_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {
            "n_images": self.n_images, "n_reproduced": self.n_reproduced, "m_a": self.m_a, "m_b": self.m_b,
            "auroc": clean(self.auroc), "spearman": clean(self.spearman),
            "precision_at": {str(k): clean(v) for k, v in self.precision_at.items()},
            "ceiling": self.ceiling.to_dict(), "on_halves": {k: clean(v) for k, v in self.on_halves.items()},
            "calibration": self.calibration.to_dict(), "n_unscored": self.n_unscored,
        }


def evaluate(score, counts_a, counts_b, m_a: int, m_b: int, *, ks=DEFAULT_K) -> ScoreEvaluation:
    """The score (g,) against half-A and half-B counts (g,) from m_a and m_b samples."""
    s, a, b = _np(score), _np(counts_a), _np(counts_b)
    if not (s.shape == a.shape == b.shape):
        raise ValueError(f"score {s.shape} and counts {a.shape}, {b.shape} differ in length")
    if m_a < 1 or m_b < 1:
        raise ValueError("each half needs at least one generated sample")
    total = a + b
    labels = total >= 1
    n_rep = int(labels.sum())
    ks = sorted({int(k) for k in ks if 0 < k <= s.size} | ({n_rep} if n_rep else set()))
    # Calibration: fit on half A's rates, check on half B (samples the fit never saw).
    fit = fit_isotonic(s, a, m_a)
    p = fit(s)
    constant = float(a.sum() / m_a / max(1, a.size))
    return ScoreEvaluation(
        n_images=int(s.size), n_reproduced=n_rep, m_a=int(m_a), m_b=int(m_b),
        auroc=auroc_or_nan(s, labels), spearman=spearman_or_nan(s, total / (m_a + m_b)),
        precision_at={k: precision_at_k(s, labels, k) for k in ks},
        ceiling=noise_ceiling(a, b), on_halves=score_on_halves(s, a, b),
        calibration=check_calibration(p, b, m_b, constant=constant), n_unscored=int(np.isnan(s).sum()),
        p=p, fit=fit, scores=s, counts=total)


def report_lines(ev: ScoreEvaluation, score_name: str = "score") -> list[str]:
    """Plain-text lines a curator reads (CLI report and docs)."""
    def f(x):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    c, h, cal = ev.ceiling, ev.on_halves, ev.calibration
    lines = [
        f"{score_name} against the audit ({ev.n_images} unique training images, {ev.n_reproduced} reproduced "
        f"by {ev.m_a + ev.m_b} samples):",
        f"  AUROC reproduced vs not {f(ev.auroc)}, Spearman with the rate {f(ev.spearman)}",
        "  precision at k: " + ", ".join(f"{k}: {f(v)}" for k, v in ev.precision_at.items()),
        f"  split halves ({ev.m_a} + {ev.m_b} samples; label = copied at least once in the half):",
        f"    noise ceiling: AUROC {f(c.auroc)}, Spearman {f(c.spearman)} (half A's counts predicting half B's)",
        f"    {score_name}:    AUROC {f(h['auroc'])}, Spearman {f(h['spearman'])}",
        f"  correlation ceiling: the counts' reliability (Spearman-Brown) {f(c.reliability)}; no score "
        f"correlates with them above {f(c.max_spearman)} ({score_name}: {f(ev.spearman)})",
        f"  p_reproduce (isotonic on half A, checked on half B): expected copies {cal.expected_copies:.1f}, "
        f"observed {cal.observed_copies}; Brier {cal.brier:.3g} vs constant {cal.brier_constant:.3g}",
    ]
    return lines
