"""What the clean-and-retrain loop (``_clean``) and its report (``_clean_report``) both
need: the arms, the memorization criteria, the score settings line and the random-flag
baseline. Imports neither of them, so the two stay free of a cycle."""
from __future__ import annotations

import math

from curate.recipes import _config

ARMS = ("baseline", "cleaned", "control")
ARM_LABEL = {"baseline": "baseline (all data)", "cleaned": "cleaned (score + dedupe)",
             "control": "control (same number removed at random)"}
CRITERIA = ("carlini", "gu")
CRITERION_TEXT = {
    "carlini": "Carlini et al. 2023: |x - nn1| < 0.5 x mean distance to the 50 nearest training images",
    "gu": "Gu et al. 2023: |x - nn1| / |x - nn2| < 1/3",
}


def fill_score_settings(cfg: dict) -> None:
    """Give ``[score.<kind>]`` of every registered score kind its defaults where the preset
    does not set them, so ``score.use`` can name any kind and ``--set score.<kind>.<key>=``
    reaches each setting."""
    from curate import scores

    s = cfg.setdefault("score", {})
    for kind in scores.kinds():
        table = s.setdefault(kind.name, {})
        for key, value in kind.defaults().items():
            table.setdefault(key, value)


def score_kind_settings(s: dict):
    """(kind, its checked settings) of a ``[score]`` table; ConfigError when they are wrong."""
    from curate import scores

    try:
        kind = scores.get(s["use"])
        return kind, kind.resolve(s.get(kind.name, {}), what=f"[score.{kind.name}]")
    except ValueError as e:
        raise _config.ConfigError(f"score.use: {e}") from None


def score_settings(s: dict) -> str:
    """One line that says how the score was computed (for logs, plots and the report)."""
    kind, params = score_kind_settings(s)
    return f"{kind.name} ({kind.describe(params, 0)})"


def random_flag_hit_probability(n: int, k: int, copies: int) -> float:
    """P(at least one of ``copies`` identical images is among ``k`` of ``n`` chosen at random)."""
    if k >= n - copies + 1:
        return 1.0
    # 1 - C(n - copies, k) / C(n, k), in logs
    miss = (math.lgamma(n - copies + 1) - math.lgamma(n - copies - k + 1)
            - math.lgamma(n + 1) + math.lgamma(n - k + 1))
    return 1.0 - math.exp(miss)
