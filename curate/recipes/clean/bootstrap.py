"""Memorized-sample counts with intervals, and what the score adds (numpy only).

Input: ``flags[arm][train_seed][criterion]``, a (m,) bool array (sample i memorized or
not). Sample i of every arm of one training seed starts from the same noise, so the arms
are compared on the *same* resamples: for training seed s, ``n_boot`` resamples of the m
sample indices (with replacement) are drawn once, ``np.random.default_rng(rng_seed(s))
.integers(0, m, size=(n_boot, m))``, and every arm's count is summed over them.

* per seed: the count and the 95 % percentile interval of the resampled counts;
* across seeds: mean, min, max, and the pooled interval: percentiles of the mean over
  seeds of the resampled counts (resample b of every seed). It covers the sampling
  noise of the generations, not the spread between training seeds (min and max show that);
* what the score adds: reduction by score = mem(dedupe) - mem(dedupe_score), by random
  = mem(dedupe) - mem(dedupe_random) (means over seeds), their ratio, the target
  (score >= factor x random, and score > 0), and intervals of the paired differences.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

LEVEL = 0.95


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The central ``level`` percentile interval of ``values`` (numpy's linear interpolation)."""
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [a, 100 - a])
    return [float(lo), float(hi)]


def resampled_counts(flags: dict, n_boot: int, rng_seed: Callable[[int], object]) -> dict:
    """``boot[arm][criterion]``: (n_seeds, n_boot) counts of memorized samples in each resample
    (seeds in the order of ``flags[arm]``)."""
    arms = list(flags)
    seeds = list(flags[arms[0]])
    crits = list(flags[arms[0]][seeds[0]])
    out = {arm: {c: np.zeros((len(seeds), n_boot)) for c in crits} for arm in arms}
    for j, s in enumerate(seeds):
        m = len(flags[arms[0]][s][crits[0]])
        idx = np.random.default_rng(rng_seed(s)).integers(0, m, size=(n_boot, m))
        for arm in arms:
            for c in crits:
                f = np.asarray(flags[arm][s][c], dtype=bool)
                if f.shape != (m,):
                    raise ValueError(f"{arm} seed {s} {c}: {f.shape[0]} samples, expected {m}")
                out[arm][c][j] = f[idx].sum(1)
    return out


def summarize(flags: dict, *, n_boot: int, rng_seed: Callable[[int], object], base: str, score: str,
              random: str, factor: float = 2.0, level: float = LEVEL) -> dict:
    """Counts with intervals per arm and seed, across seeds, and what the score adds (module doc).

    Returns ``{"arms": {arm: {criterion: {...}}}, "score_adds": {criterion: {...}}}``."""
    boot = resampled_counts(flags, n_boot, rng_seed)
    seeds = list(flags[base])
    arms_out: dict = {}
    for arm, by_seed in flags.items():
        arms_out[arm] = {}
        for c in boot[arm]:
            counts = [int(np.count_nonzero(by_seed[s][c])) for s in seeds]
            arms_out[arm][c] = {
                "per_seed": {str(s): {"count": counts[j], "ci": interval(boot[arm][c][j], level)}
                             for j, s in enumerate(seeds)},
                "mean": float(np.mean(counts)), "min": min(counts), "max": max(counts),
                "ci": interval(boot[arm][c].mean(0), level),
            }
    adds = {}
    for c in boot[base]:
        mean = {a: arms_out[a][c]["mean"] for a in (base, score, random)}
        b = {a: boot[a][c].mean(0) for a in (base, score, random)}  # pooled over seeds, paired per resample
        red_s, red_r = mean[base] - mean[score], mean[base] - mean[random]
        adds[c] = {
            "reduction_score": red_s, "reduction_score_ci": interval(b[base] - b[score], level),
            "reduction_random": red_r, "reduction_random_ci": interval(b[base] - b[random], level),
            "ratio": red_s / red_r if red_r > 0 else None,
            "random_minus_score": mean[random] - mean[score],
            "random_minus_score_ci": interval(b[random] - b[score], level),
            # reduction_score - factor x reduction_random: the target holds when it is >= 0
            "margin": red_s - factor * red_r,
            "margin_ci": interval((b[base] - b[score]) - factor * (b[base] - b[random]), level),
            "factor": factor, "target_met": bool(red_s > 0 and red_s >= factor * red_r),
        }
    return {"arms": arms_out, "score_adds": adds, "n_boot": int(n_boot), "level": level, "seeds": seeds}
