"""Tables and the calibration plot of docs/scores-ceiling.md, from the outputs of
docs/scores_ceiling.py (``report`` step). numpy, scipy and matplotlib only."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score


def auroc(labels, score) -> float:
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, score))


def tpr_at_fpr(labels, score, fpr: float = 0.01) -> float:
    """Largest TPR at a threshold whose false-positive rate is <= fpr (ties count against)."""
    labels, score = np.asarray(labels, bool), np.asarray(score, float)
    neg = np.sort(score[~labels])[::-1]
    allowed = int(math.floor(fpr * len(neg)))  # negatives allowed above the threshold
    thr = neg[allowed] if allowed < len(neg) else -np.inf
    return float((score[labels] > thr).mean())


def spearman(a, b) -> float:
    return float(spearmanr(a, b).statistic)


def load_counts(run: Path) -> tuple[np.ndarray, int]:
    """(sets, images) reproduction counts (RMS criterion) and samples per set."""
    sets = sorted((run / "samples").glob("set*.json"), key=lambda p: int(p.stem[3:]))
    data = [json.loads(p.read_text()) for p in sets]
    return np.array([d["counts_rms"] for d in data]), int(data[0]["n_samples"])


def label(counts_total: np.ndarray, n_samples: int, rule: str) -> np.ndarray:
    """Positive images: rate >= 1/1024 (``rule`` = a rate such as '0.0009765625'), or above the
    median rate (``rule`` = 'median': for a model that reproduces every image)."""
    rate = counts_total / n_samples
    if rule == "median":
        return rate > np.median(rate)
    return rate >= float(rule)


def ceiling(counts: np.ndarray, per_set: int, half_sets: int, rows=None, rule: str = str(1 / 1024)) -> tuple[float, float]:
    """Split-half ceiling: labels from half A (``label``), predictor = half B's counts, both
    directions averaged; and Spearman of the two halves' counts. Halves of ``half_sets`` sets."""
    rows = np.arange(counts.shape[1]) if rows is None else rows
    a = counts[:half_sets, rows].sum(0)
    b = counts[half_sets:2 * half_sets, rows].sum(0)
    n = half_sets * per_set
    au = np.nanmean([auroc(label(a, n, rule), b), auroc(label(b, n, rule), a)])
    return float(au), spearman(a, b)


def score_row(name, values, labels, rate, ceil) -> dict:
    au = auroc(labels, values)
    return dict(name=name, auroc=au, frac=(au - 0.5) / (ceil - 0.5), spearman=spearman(values, rate),
                tpr=tpr_at_fpr(labels, values))


def fmt_rows(rows) -> str:
    out = ["| score | settings | AUROC | fraction of ceiling | Spearman with rate | TPR at 1 % FPR |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| `{r['name']}` | {r.get('settings', 'defaults')} | {r['auroc']:.3f} | {r['frac']:.2f} | "
                   f"{r['spearman']:.2f} | {r['tpr']:.2f} |")
    return "\n".join(out)


def report(a) -> None:
    run = Path(a.run)
    counts, per_set = load_counts(run)
    n_sets, n_img = counts.shape
    total = counts.sum(0)
    N = n_sets * per_set
    rate = total / N
    rule = a.label
    labels = label(total, N, rule)
    tune, ev = np.arange(0, n_img, 2), np.arange(1, n_img, 2)
    lines = [f"samples: {n_sets} sets of {per_set} = {N}; positives (rule {rule}): "
             f"{int(labels.sum())} of {n_img} (tuning half {int(labels[tune].sum())}, evaluation half "
             f"{int(labels[ev].sum())}); with >= 1 copy: {int((total > 0).sum())}; copies: {int(total.sum())} "
             f"({total.sum() / N:.4f} of all samples)", "", "Split-half noise ceilings (AUROC, Spearman):"]
    for h in sorted({1, 2, n_sets // 2}):
        if 2 * h <= n_sets:
            c_all, c_ev = ceiling(counts, per_set, h, rule=rule), ceiling(counts, per_set, h, ev, rule)
            lines.append(f"- {h * per_set} samples per half: all images {c_all[0]:.3f} / {c_all[1]:.2f}; "
                         f"evaluation half {c_ev[0]:.3f} / {c_ev[1]:.2f}")
    ceil_all = ceiling(counts, per_set, n_sets // 2, rule=rule)[0]
    ceil_ev = ceiling(counts, per_set, n_sets // 2, ev, rule)[0]
    sc = run / "scores"
    rows_all, rows_ev = [], []
    for p in sorted(sc.glob("*.json")):
        d = json.loads(p.read_text())
        v = np.array(d["values"], float)
        if p.stem.startswith("recon_"):
            continue
        given = "defaults" if p.stem != "reproduction_probability" else ", ".join(
            f"{k}={v}" for k, v in d["params"].items())
        rows_all.append(dict(score_row(p.stem, v, labels, rate, ceil_all), settings=given))
        rows_ev.append(dict(score_row(p.stem, v[ev], labels[ev], rate[ev], ceil_ev), settings=given))
    # reconstruction: t chosen on the tuning half, reported on the evaluation half
    grid = []
    for p in sorted(sc.glob("recon_*.json")):
        d = json.loads(p.read_text())
        v = np.array(d["values"], float)
        grid.append((p.stem, d, v, auroc(labels[tune], v[tune]), spearman(v[tune], rate[tune])))
    if grid:
        lines += ["", "Reconstruction grid on the TUNING half (AUROC / Spearman):"]
        lines += [f"- {g[0]}: {g[3]:.3f} / {g[4]:.2f}  (evaluation half, not used to choose: "
                  f"{auroc(labels[ev], g[2][ev]):.3f})" for g in grid]
        best = max(grid, key=lambda g: (g[3], g[4]))
        d, v = best[1], best[2]
        r = score_row("reconstruction", v[ev], labels[ev], rate[ev], ceil_ev)
        r["settings"] = f"chosen on tuning: t={d['params']['t']}, S={d['params']['steps']}, K={d['params']['draws']}"
        rows_ev.append(r)
        ra = score_row("reconstruction", v, labels, rate, ceil_all)
        ra["settings"] = r["settings"] + " (tuning images included)"
        rows_all.append(ra)
        draws = np.array(d["draws"])
        lines += ["", f"Reconstruction at the chosen setting with fewer draws (first k of K, evaluation half):"]
        for k in (1, 2, 4, draws.shape[1]):
            vk = -draws[:, :k].mean(1)
            lines.append(f"- K={k}: AUROC {auroc(labels[ev], vk[ev]):.3f}, Spearman {spearman(vk[ev], rate[ev]):.2f}")
    lines += ["", f"Every image (ceiling {ceil_all:.3f}):", "", fmt_rows(rows_all), "",
              f"Evaluation half (ceiling {ceil_ev:.3f}):", "", fmt_rows(rows_ev)]
    rp = sc / "reproduction_probability.json"
    if rp.exists():
        d = json.loads(rp.read_text())
        lines += ["", calibration(np.array(d["values"]), np.array(d["extra"]["reproduction_se"]),
                                  np.array(d["extra"]["reproduction_ess"]), total, N, a.plot)]
    text = "\n".join(lines)
    (run / "report.md").write_text(text + "\n")
    print(text)


def calibration(p, se, ess, total, N, plot) -> str:
    """Estimated p against the measured rate: summary lines, and a log-log plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = total / N
    # 95 % Poisson-ish (Wilson) interval of each measured rate
    z = 1.96
    centre = (rate + z * z / (2 * N)) / (1 + z * z / N)
    half = z * np.sqrt(rate * (1 - rate) / N + z * z / (4 * N * N)) / (1 + z * z / N)
    lo, hi = np.maximum(centre - half, 0), centre + half
    inside = ((p >= lo - 2 * se) & (p <= hi + 2 * se)).mean()
    pos = (rate > 0) & (p > 0)
    ratio = np.median(p[pos] / rate[pos]) if pos.any() else float("nan")
    floor = 0.5 / N
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(np.maximum(rate, floor), np.maximum(p, floor), xerr=[np.maximum(rate, floor) - np.maximum(lo, floor * 0.99),
                np.maximum(hi, floor) - np.maximum(rate, floor)], yerr=np.minimum(se, np.maximum(p, floor) * 0.99),
                fmt="o", ms=4, alpha=0.8, lw=0.8)
    ends = [floor * 0.8, 1.0]
    ax.plot(ends, ends, "k--", lw=0.8, label="p = measured rate")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"measured rate ({N} samples; 0 at {floor:.1e})")
    ax.set_ylabel("estimated p (reproduction_probability; 0 at the same floor)")
    ax.set_title("calibration: estimated p vs measured rate")
    ax.legend(loc="upper left")
    fig.tight_layout()
    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)
    return (f"Calibration of reproduction_probability ({len(p)} images): Spearman with the measured rate "
            f"{spearman(p, rate):.2f}; sum of p {p.sum():.4f} vs measured copies per sample {rate.sum():.4f}; "
            f"median p / rate over images with both > 0: {ratio:.2f}; p within the rate's 95 % interval "
            f"(+- 2 se): {inside:.2f} of images; p = 0 for {int((p == 0).sum())} images "
            f"({int(((p == 0) & (rate > 0)).sum())} of them reproduced); median ESS {np.median(ess):.1f}; plot: {plot}")
