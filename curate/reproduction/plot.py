"""A score field against an audit's reproduction counts: one point per unique image."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def score_vs_reproductions(score, counts, path, *, score_name: str = "score", samples: int | None = None,
                           p=None, title: str | None = None, dpi: int = 120) -> Path:
    """Scatter of ``score`` (g,) against ``counts`` (g,) (copies per unique image, drawn at
    log(1 + count)), reproduced images in red; with ``p`` (g,) also the calibrated
    p_reproduce x ``samples`` as a step line (expected copies). Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    s, k = np.asarray(score, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    keep = np.isfinite(s)
    s, k = s[keep], k[keep]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rep = k > 0
    ax.scatter(s[~rep], k[~rep], s=6, c="0.6", alpha=0.5, label=f"not reproduced ({int((~rep).sum())})")
    ax.scatter(s[rep], k[rep], s=14, c="tab:red", label=f"reproduced ({int(rep.sum())})")
    if p is not None and samples:
        pp = np.asarray(p, dtype=np.float64)[keep]
        order = np.argsort(s)
        ax.step(s[order], pp[order] * samples, where="post", c="tab:blue",
                label=f"p_reproduce x {samples} (isotonic, half A)")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel(f"{score_name} (higher = more at risk)")
    ax.set_ylabel("copies among the generated samples")
    ax.set_title(title or f"{score_name} against the reproduction audit")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path
