"""A score turned into p_reproduce: the probability that one generated sample copies
the image, by isotonic regression, fitted on one half of the samples and checked on
the other.

Fit (half A): the non-decreasing step function g minimising sum_i (g(s_i) - k_i^A/m_A)^2
over the unique images i (pool-adjacent-violators; scikit-learn's
``IsotonicRegression``), s_i the score and k_i^A / m_A the image's rate in half A.
Scores outside the fitted range get the nearest end's value.

Check (half B, samples the fit never saw): expected copies sum_i g(s_i) · m_B against the
observed sum_i k_i^B, the Brier-like error mean_i (g(s_i) - k_i^B/m_B)^2 against that of
the constant predictor (half A's mean rate), and a table by bins of p.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from curate.reproduction.ceiling import _np


@dataclass
class Calibration:
    """An isotonic map score -> p_reproduce, fitted on ``m_fit`` samples' rates."""

    x: np.ndarray  # (t,) thresholds of the step function (ascending scores)
    y: np.ndarray  # (t,) p at those thresholds
    m_fit: int

    def __call__(self, score) -> np.ndarray:
        """p_reproduce (n,) float64 of scores (n,); NaN where the score is NaN."""
        s = _np(score)
        out = np.interp(s, self.x, self.y)  # clamps outside the range
        out[np.isnan(s)] = np.nan
        return out


def fit_isotonic(score, counts, m: int) -> Calibration:
    """Fit g(score) ~ counts / m over the images with a score (module doc)."""
    from sklearn.isotonic import IsotonicRegression

    s, k = _np(score), _np(counts)
    if s.shape != k.shape:
        raise ValueError(f"score {s.shape} and counts {k.shape} differ in length")
    if m < 1:
        raise ValueError("m (samples behind the counts) must be >= 1")
    keep = ~np.isnan(s)
    if keep.sum() < 2:
        raise ValueError("need at least two images with a score to calibrate")
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(s[keep], k[keep] / m)
    return Calibration(np.asarray(iso.X_thresholds_, dtype=np.float64),
                       np.asarray(iso.y_thresholds_, dtype=np.float64), int(m))


@dataclass
class CalibrationCheck:
    """How p_reproduce fitted on one half does on the other (module doc)."""

    m_check: int
    expected_copies: float
    observed_copies: int
    brier: float
    brier_constant: float
    bins: list = field(default_factory=list)  # [{p_low, p_high, images, mean_p, observed_rate}]

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def check_calibration(p, counts, m: int, *, constant: float, n_bins: int = 5) -> CalibrationCheck:
    """Compare predicted p (n,) with counts (n,) observed in m held-out samples."""
    p, k = _np(p), _np(counts)
    keep = ~np.isnan(p)
    p, k = p[keep], k[keep]
    rate = k / m
    bins = []
    # equal-count bins of p (ties kept together by the quantile edges)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1))) if p.size else np.zeros(0)
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        sel = (p >= lo) & ((p < hi) if i < len(edges) - 2 else (p <= hi))
        if sel.any():
            bins.append({"p_low": float(lo), "p_high": float(hi), "images": int(sel.sum()),
                         "mean_p": float(p[sel].mean()), "observed_rate": float(rate[sel].mean())})
    return CalibrationCheck(
        m_check=int(m), expected_copies=float(p.sum() * m), observed_copies=int(k.sum()),
        brier=float(np.mean((p - rate) ** 2)) if p.size else math.nan,
        brier_constant=float(np.mean((constant - rate) ** 2)) if p.size else math.nan, bins=bins)
