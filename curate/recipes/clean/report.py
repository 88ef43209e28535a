"""The report of the clean-and-retrain loop: what each arm removed, how much each model
memorizes (with intervals), what the score adds beyond de-duplication, and how the score
ranks the planted and the reproduced images; a rich table, figures, ``results.json`` and
``report.md`` (:mod:`.markdown`) in the run folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from curate.recipes import _config
from curate.recipes.clean.arms import arm_view
from curate.recipes.clean.data import train_view, view_images
from curate.recipes.clean.layout import Layout
from curate.recipes.clean.stages import score_field
from curate.recipes.clean.settings import (ARM_LABEL, ARMS, CRITERIA, CRITERION_TEXT, EXPORTED_ARM, criterion_name,
                                          score_settings)


def against_ceiling(mem, crit: str, first: torch.Tensor, u_scores: torch.Tensor) -> dict:
    """The reproduced-vs-not labels' split-half noise ceiling (even vs odd samples of ``mem``:
    how well one half's counts rank the other half's labels, copied at least once) and the
    score on that footing, over the unique images ``first`` (g,) with scores (g,)."""
    from curate.reproduction.ceiling import noise_ceiling, score_on_halves, split_counts

    ca, cb = (c[first] for c in split_counts(mem, crit))
    c, h = noise_ceiling(ca, cb), score_on_halves(u_scores, ca, cb)
    return {"noise_ceiling": {"auroc": c.auroc, "spearman": c.spearman},
            "auroc_halves": h["auroc"], "spearman_halves": h["spearman"]}


def score_analysis(lay: Layout, cfg: dict) -> dict:
    """How the score ranks the planted duplicates and the images the scoring baseline reproduces.

    Over *unique* training images (exact copies share one score): AUROC planted vs
    not, AUROC reproduced (Carlini) vs not, Spearman with the reproduction count, the
    planted images' ranks; and which planted images each arm removed entirely.
    """
    from curate.evaluate import auroc, spearman
    from curate.memorization import Memorization, duplicate_groups

    field = score_field(cfg)
    train = train_view(lay.name)
    ids, ref = view_images(train_view(lay.name))
    values = dict(zip(*train.values(["id", field])))
    group_of = dict(zip(*train.values(["id", "planted_group"])))
    scores = torch.tensor([np.nan if values.get(i) is None else values[i] for i in ids], dtype=torch.float64)
    _, first = duplicate_groups(ref)
    first = first.sort().values
    u_scores = scores[first]
    u_planted = torch.tensor([group_of.get(ids[i]) is not None for i in first.tolist()])
    mem = Memorization.load(lay.memorization_path("baseline", lay.score_seed))
    out: dict = {"field": field, "n_unique": int(first.numel()), "model": f"baseline_s{lay.score_seed}"}
    order = torch.argsort(torch.nan_to_num(u_scores, nan=-math.inf), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    if u_planted.any():
        out["planted_ranks"] = sorted(rank[u_planted].tolist())
        out["auroc_planted"] = auroc(u_scores[u_planted], u_scores[~u_planted])
    for crit in CRITERIA:
        counts = mem.counts(crit)[first].to(torch.float64)
        repro = counts > 0
        entry = {"n_reproduced": int(repro.sum())}
        if repro.any() and (~repro).any():
            entry["auroc"] = auroc(u_scores[repro], u_scores[~repro])
            entry["spearman"] = spearman(u_scores, counts)[0]
            other = repro & ~u_planted
            if other.any():
                entry["n_reproduced_not_planted"] = int(other.sum())
                entry["auroc_not_planted"] = auroc(u_scores[other], u_scores[~repro & ~u_planted])
        entry.update(against_ceiling(mem, crit, first, u_scores))
        entry["ranks_of_reproduced"] = sorted(rank[repro].tolist())[:50]
        out[f"reproduced_{crit}"] = entry
    # Planted images an arm leaves no copy of (the report reads planted_group; cleaning never does).
    groups = sorted({g for g in group_of.values() if g is not None})
    out["planted_groups"] = len(groups)
    out["planted_samples"] = sum(g is not None for g in group_of.values())
    out["planted_groups_gone"], out["planted_samples_removed"] = {}, {}
    for arm in ARMS:
        kept = {g for g in arm_view(train, arm).values("planted_group") if g is not None}
        out["planted_groups_gone"][arm] = len(groups) - len(kept)
        out["planted_samples_removed"][arm] = out["planted_samples"] - sum(
            g is not None for g in arm_view(train, arm).values("planted_group"))
    cl = lay.stage_result("clean")
    # k of the n_unique de-duplicated images at random hit each planted image with probability k / n_unique
    out["planted_groups_gone_if_random_expected"] = len(groups) * cl["top_k"] / cl["n_unique"] if groups else 0.0
    out["_unique_scores"] = u_scores
    out["_unique_planted"] = u_planted
    out["_unique_images"] = ref[first]
    out["_unique_reproduced"] = mem.counts("carlini")[first] > 0
    return out


def _bar_chart(arms_stats: dict, n_samples: int, n_seeds: int, path: Path) -> Path:
    """Mean memorized samples per arm and criterion, the pooled 95 % interval as error bars,
    each training seed's count as a dot; left every arm, right the dedupe arms on their own scale."""
    from curate.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [4, 3]})
    width = 0.8 / len(CRITERIA)
    for ax, arms in zip(axes, (ARMS, [a for a in ARMS if a != "baseline"])):
        x = np.arange(len(arms))
        for j, crit in enumerate(CRITERIA):
            e = [arms_stats[a][crit] for a in arms]
            mean = np.array([v["mean"] for v in e])
            err = np.stack([mean - [v["ci"][0] for v in e], np.array([v["ci"][1] for v in e]) - mean])
            pos = x + (j - (len(CRITERIA) - 1) / 2) * width
            ax.bar(pos, mean, width, yerr=np.maximum(err, 0), capsize=3, label=f"{criterion_name(crit)} criterion")
            if n_seeds > 1:
                for p, v in zip(pos, e):
                    pts = [s["count"] for s in v["per_seed"].values()]
                    ax.plot([p] * len(pts), pts, "k.", ms=4)
        # the means under each arm's name (labels on the bars collide with the intervals)
        ax.set_xticks(x, [f"{a}\n" + " / ".join(f"{arms_stats[a][c]['mean']:.3g}" for c in CRITERIA) for a in arms],
                      fontsize=8)
    axes[0].set_ylabel(f"memorized samples (of {n_samples})")
    axes[0].legend(fontsize=8)
    axes[1].set_title("the dedupe arms", fontsize=10)
    seeds = f"mean of {n_seeds} training seeds (dots: each seed); " if n_seeds > 1 else ""
    fig.suptitle(f"memorized samples per arm: {seeds}bars: 95% bootstrap interval", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 100)


def fmt_count(e: dict, n_seeds: int) -> str:
    """``26 [18-35]`` for one seed; ``26.3 (20-31) [22.1-30.5]`` = mean (min-max over seeds) [pooled CI]."""
    ci = f"[{e['ci'][0]:.3g}-{e['ci'][1]:.3g}]"
    if n_seeds == 1:
        return f"{e['mean']:.0f} {ci}"
    return f"{e['mean']:.3g} ({e['min']}-{e['max']}) {ci}"


def adds_line(crit: str, a: dict) -> str:
    """One sentence: what score-ranked removal cut beyond dedupe, against random removal."""
    def ci(key):
        return f"[{a[key][0]:.3g}, {a[key][1]:.3g}]"

    ratio = "undefined (random removal cut none)" if a["ratio"] is None else f"{a['ratio']:.2f}"
    verdict = "MET" if a["target_met"] else "NOT MET"
    return (f"{criterion_name(crit)}: after dedupe, removal by score cut {a['reduction_score']:.3g} {ci('reduction_score_ci')} "
            f"memorized samples, random removal {a['reduction_random']:.3g} {ci('reduction_random_ci')}; ratio {ratio}; "
            f"random - score {a['random_minus_score']:.3g} {ci('random_minus_score_ci')}; target (score >= "
            f"{a['factor']:g} x random) {verdict} (margin {a['margin']:.3g} {ci('margin_ci')})")


def write_report(lay: Layout, cfg: dict, *, stage_names: list[str], results: dict, wall_seconds: float) -> dict:
    """The report of a finished run: a rich table on the console, figures, ``results.json``
    and ``report.md``; returns the results dict."""
    from rich.console import Console
    from rich.table import Table

    from curate import plots
    from curate.recipes.clean.markdown import markdown

    figs = lay.path / "figures"
    data, clean, mem = lay.stage_result("dataset"), lay.stage_result("clean"), lay.stage_result("memorization")
    sa = score_analysis(lay, cfg)
    n_seeds = len(lay.seeds)
    n_samples = int(cfg["memorization"]["samples"])

    # --- figures
    us, up = sa.pop("_unique_scores"), sa.pop("_unique_planted")
    uimg, urep = sa.pop("_unique_images"), sa.pop("_unique_reproduced")
    xlabel = f"{sa['field']} ({score_settings(cfg['score'])})"
    if up.any():
        plots.two_group_histogram(us[up], us[~up], figs / "score_hist_planted.png", labels=("planted", "not planted"),
                                  xlabel=xlabel, title="score of unique training images")
    if urep.any() and (~urep).any():
        plots.two_group_histogram(us[urep], us[~urep], figs / "score_hist_reproduced.png",
                                  labels=("reproduced by baseline", "not reproduced"), xlabel=xlabel,
                                  title="score vs what the scoring baseline reproduces (Carlini)")
    zoom = 4 if uimg.shape[-1] <= 16 else 2
    plots.top_bottom_grids(uimg, us, figs, k=int(cfg["report"]["grid"]), prefix="score_", ncol=16, zoom=zoom)
    _bar_chart(mem["arms"], n_samples, n_seeds, figs / "memorized_counts.png")

    # --- table
    seeds_txt = f"training seed {lay.seeds[0]}" if n_seeds == 1 else f"mean (min-max) of training seeds {lay.seeds}"
    table = Table(title=f"what the score adds beyond dedupe ({lay.recipe}): memorized samples of {n_samples}, "
                        f"{seeds_txt}, [95% bootstrap interval]")
    for col in ("arm", "training images", "removed", *(f"{criterion_name(c)} memorized" for c in CRITERIA),
                "images reproduced (Carlini)"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    rows = []
    for arm in ARMS:
        m = mem["arms"][arm]
        repro = [mem["runs"][f"{arm}_s{s}"]["carlini"]["images_reproduced"] for s in lay.seeds]
        row = {"model": arm, "training_images": clean["n_kept"][arm], "removed": clean["n_removed"][arm],
               **{c: m[c]["mean"] for c in CRITERIA}, **{f"{c}_ci": m[c]["ci"] for c in CRITERIA},
               "images_reproduced_carlini": float(np.mean(repro)), "n_samples": n_samples,
               "per_seed": {str(s): {c: m[c]["per_seed"][str(s)]["count"] for c in CRITERIA} for s in lay.seeds}}
        rows.append(row)
        table.add_row(ARM_LABEL[arm], str(row["training_images"]), str(row["removed"]),
                      *(fmt_count(m[c], n_seeds) for c in CRITERIA),
                      f"{row['images_reproduced_carlini']:.3g}")
    console = Console(width=max(140, Console().width))
    console.print(table)
    for crit in CRITERIA:
        console.print(adds_line(crit, mem["score_adds"][crit]))

    timings = {s: {"seconds": lay.stage_result(s).get("seconds"), "cpu_seconds": lay.stage_result(s).get("cpu_seconds")}
               for s in stage_names if lay.stage_result(s)}
    result = {
        "recipe": lay.recipe, "dataset_name": lay.name, "run_dir": str(lay.path), "config": cfg,
        "arms": list(ARMS), "arm_labels": ARM_LABEL, "exported_arm": EXPORTED_ARM, "seeds": lay.seeds,
        "score_model": f"baseline_s{lay.score_seed}", "data": data, "clean": clean, "rows": rows,
        "memorization": mem, "score_adds": mem["score_adds"], "criteria": CRITERION_TEXT, "score_analysis": sa,
        "timings": timings, "stage_seconds_total": sum(t["seconds"] or 0 for t in timings.values()),
        "wall_seconds_this_call": wall_seconds, **results,
    }
    _config.atomic_write(lay.path / "results.json", json.dumps(result, indent=2, default=float))
    _config.atomic_write(lay.path / "report.md", markdown(result))
    console.print(f"report: {(lay.path / 'report.md').resolve()}")
    return result
