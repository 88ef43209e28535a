"""The report of the clean-and-retrain loop: what the score flagged, what cleaning
removed, how much each model memorizes; a rich table, figures, ``results.json`` and
``report.md`` in the run folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from curate.recipes import _config
from curate.recipes._clean_common import (ARM_LABEL, ARMS, CRITERIA, CRITERION_TEXT, random_flag_hit_probability,
                                          score_settings)

STAGE_ORDER = ("dataset", "train_baseline", "score", "clean", "control", "train_cleaned", "train_control",
               "sample_baseline", "sample_cleaned", "sample_control", "memorization")


def _stage(run, name: str) -> dict:
    p = run.path / f"{name}.done.json"
    return json.loads(p.read_text()) if p.exists() else {}


def score_analysis(loop) -> dict:
    """How the score ranks the planted duplicates and the images the baseline reproduces.

    Over *unique* training images (exact copies share one score): AUROC planted vs
    not, AUROC reproduced-by-the-baseline (Carlini) vs not, Spearman with the
    reproduction count, the planted images' ranks; and how many planted groups the
    top-k flag reached, against what flagging k samples at random would reach.
    """
    from curate.evaluate import auroc, spearman
    from curate.memorization import Memorization, duplicate_groups

    field = loop.score_field()
    train = loop.train_view()
    ids, ref = loop.reference()
    values = dict(zip(*train.values(["id", field])))
    group_of = dict(zip(*train.values(["id", "planted_group"])))
    tags = dict(zip(*train.values(["id", "tags"])))
    scores = torch.tensor([np.nan if values.get(i) is None else values[i] for i in ids], dtype=torch.float64)
    _, first = duplicate_groups(ref)
    first = first.sort().values
    u_scores = scores[first]
    u_planted = torch.tensor([group_of.get(ids[i]) is not None for i in first.tolist()])
    mem = Memorization.load(loop.run.path / "memorization_baseline")
    out: dict = {"field": field, "n_unique": int(first.numel())}
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
        entry["ranks_of_reproduced"] = sorted(rank[repro].tolist())[:50]
        out[f"reproduced_{crit}"] = entry
    # Which planted groups did the flag reach, and what would k random flags reach?
    groups = sorted({g for g in group_of.values() if g is not None})
    k = loop.cfg["clean"]["top_k"]
    n = len(ids)
    reached = {g for i, g in group_of.items() if g is not None and "high_risk" in (tags.get(i) or [])}
    copies = int(loop.cfg["data"]["copies"])
    out["planted_groups"] = len(groups)
    out["planted_groups_flagged"] = len(reached)
    out["planted_groups_flagged_if_random"] = len(groups) * random_flag_hit_probability(n, k, copies)
    removed_tags = set(_stage(loop.run, "clean").get("exclude_tags", ["duplicate"]))
    out["planted_samples"] = sum(g is not None for g in group_of.values())
    out["planted_samples_removed_by_cleaning"] = sum(
        1 for i, g in group_of.items() if g is not None and removed_tags & set(tags.get(i) or []))
    out["planted_samples_removed_by_control"] = sum(
        1 for i, g in group_of.items() if g is not None and "control_removed" in (tags.get(i) or []))
    out["_unique_scores"] = u_scores
    out["_unique_planted"] = u_planted
    out["_unique_images"] = ref[first]
    out["_unique_reproduced"] = mem.counts("carlini")[first] > 0
    return out


def _bar_chart(mem: dict, path: Path) -> Path:
    from curate.plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.38
    x = np.arange(len(ARMS))
    for j, crit in enumerate(CRITERIA):
        vals = [mem[a][crit]["memorized_samples"] for a in ARMS]
        bars = ax.bar(x + (j - 0.5) * width, vals, width, label=f"{crit.capitalize()} criterion")
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [a for a in ARMS])
    ax.set_ylabel(f"memorized samples (of {mem['baseline']['n_samples']})")
    ax.set_title("memorized samples per model")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path, 100)


def verdict(mem: dict) -> dict:
    """Per criterion: cleaned <= baseline / 2 and cleaned < control."""
    out = {}
    for crit in CRITERIA:
        b, c, r = (mem[a][crit]["memorized_samples"] for a in ARMS)
        out[crit] = {"baseline": b, "cleaned": c, "control": r, "at_most_half_of_baseline": c <= b / 2,
                     "fewer_than_control": c < r, "pass": c <= b / 2 and c < r}
    return out


def write_report(loop, *, wall_seconds: float) -> dict:
    from rich.console import Console
    from rich.table import Table

    from curate import plots

    run, cfg = loop.run, loop.cfg
    figs = run.path / "figures"
    data, clean, ctrl = _stage(run, "dataset"), _stage(run, "clean"), _stage(run, "control")
    mem = _stage(run, "memorization")
    sa = score_analysis(loop)
    n_train = clean["n_train"]
    n_kept = {"baseline": n_train, "cleaned": clean["n_exported"], "control": ctrl["n_kept"]}

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
                                  title="score vs what the baseline reproduces (Carlini)")
    zoom = 4 if uimg.shape[-1] <= 16 else 2
    plots.top_bottom_grids(uimg, us, figs, k=int(cfg["report"]["grid"]), prefix="score_", ncol=16, zoom=zoom)
    _bar_chart(mem, figs / "memorized_counts.png")

    # --- table
    v = verdict(mem)
    table = Table(title=f"clean-and-retrain ({loop.recipe}): memorized samples of {mem['baseline']['n_samples']}")
    for col in ("model", "training images", "removed", "Carlini memorized", "of which planted",
                "Gu memorized", "of which planted", "images reproduced (Carlini)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = []
    for arm in ARMS:
        m = mem[arm]
        row = {"model": arm, "training_images": n_kept[arm], "removed": n_train - n_kept[arm],
               "carlini": m["carlini"]["memorized_samples"], "carlini_planted": m["carlini"]["memorized_samples_planted"],
               "gu": m["gu"]["memorized_samples"], "gu_planted": m["gu"]["memorized_samples_planted"],
               "images_reproduced_carlini": m["carlini"]["images_reproduced"], "n_samples": m["n_samples"]}
        rows.append(row)
        table.add_row(ARM_LABEL[arm], str(row["training_images"]), str(row["removed"]), str(row["carlini"]),
                      str(row["carlini_planted"]), str(row["gu"]), str(row["gu_planted"]),
                      str(row["images_reproduced_carlini"]))
    console = Console(width=max(140, Console().width))
    console.print(table)
    for crit in CRITERIA:
        x = v[crit]
        console.print(f"{crit.capitalize()} ({CRITERION_TEXT[crit]}): cleaned {x['cleaned']} vs baseline "
                      f"{x['baseline']} (<= half: {x['at_most_half_of_baseline']}) and control {x['control']} "
                      f"(fewer: {x['fewer_than_control']}) -> {'PASS' if x['pass'] else 'FAIL'}")

    timings = {s: {"seconds": _stage(run, s).get("seconds"), "cpu_seconds": _stage(run, s).get("cpu_seconds")}
               for s in STAGE_ORDER if _stage(run, s)}
    extra_stages = {k: v2 for k, v2 in loop.results.items()}
    result = {
        "recipe": loop.recipe, "dataset_name": loop.name, "run_dir": str(run.path),
        "config": cfg, "data": data, "clean": clean, "control": ctrl, "rows": rows,
        "memorization": mem, "verdict": v, "criteria": CRITERION_TEXT, "score_analysis": sa,
        "timings": timings, "stage_seconds_total": sum(t["seconds"] or 0 for t in timings.values()),
        "wall_seconds_this_call": wall_seconds, **extra_stages,
    }
    _config.atomic_write(run.path / "results.json", json.dumps(result, indent=2, default=float))
    _config.atomic_write(run.path / "report.md", markdown(result))
    report = (run.path / "report.md").resolve()
    console.print(f"report: {report}")
    return result


def _f(x, spec=".3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(r: dict) -> str:
    cfg, d, c, sa = r["config"], r["data"], r["clean"], r["score_analysis"]
    s, m = cfg["score"], cfg["model"]
    lines = [f"# Clean and retrain: {r['recipe']}", ""]
    lines += ["## Data", ""]
    if d.get("n_planted"):
        lines += [f"{d['n_train']} training samples in the FiftyOne dataset `{r['dataset_name']}`. To make "
                  f"memorization measurable the way it happens in real data, **{d['n_planted']} training images "
                  f"were planted {d['copies']} times each** ({d['n_copies_added']} extra files, exact copies): "
                  "Carlini et al. (2023) found that duplicated training images are memorized far more often. "
                  "The field `planted_group` marks them for this report only; cleaning never reads it.", ""]
    else:
        lines += [f"{d['n_train']} training samples in the FiftyOne dataset `{r['dataset_name']}`; "
                  "no duplicates were planted.", ""]
    lines += ["## Cleaning", "",
              f"Score: `{sa['field']}` from the baseline model ({score_settings(s)}). "
              f"Flagged the top {cfg['clean']['top_k']} samples (`high_risk`), deduplicated them against the whole "
              f"set (normalised L2 <= {cfg['clean']['dedupe_threshold']}, keep the lowest score): "
              f"{c['n_groups']} groups, {c['n_duplicates_tagged']} samples tagged `duplicate`. Removed "
              f"{c['n_removed']} samples (tags {', '.join('`%s`' % t for t in c['exclude_tags'])}) and exported "
              f"{c['n_exported']} to `export/`. The control removed {r['control']['n_removed']} samples at random "
              "(seeded, tag `control_removed`).", ""]
    lines += ["## Memorized samples", "",
              f"Each model (tiny budget: U-Net `{m['preset']}`, {m['steps']} steps of batch {m['batch_size']}, "
              f"same seed) generated {r['rows'][0]['n_samples']} samples ({cfg['memorization']['method']}, "
              f"{cfg['memorization']['steps']} steps, same seed); a sample is memorized when it copies an image of "
              "the original training set:", ""]
    for crit in CRITERIA:
        lines.append(f"* **{crit.capitalize()}**: {CRITERION_TEXT[crit]}")
    lines += ["", "| model | training images | removed | memorized (Carlini) | of which planted | memorized (Gu) "
              "| of which planted | images reproduced (Carlini) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| {ARM_LABEL[row['model']]} | {row['training_images']} | {row['removed']} | {row['carlini']} "
                     f"| {row['carlini_planted']} | {row['gu']} | {row['gu_planted']} | {row['images_reproduced_carlini']} |")
    lines.append("")
    for crit in CRITERIA:
        x = r["verdict"][crit]
        lines.append(f"* {crit.capitalize()} criterion: cleaned **{x['cleaned']}** vs baseline {x['baseline']} "
                     f"({'at most' if x['at_most_half_of_baseline'] else 'more than'} half) and vs random-removal "
                     f"control {x['control']} ({'fewer' if x['fewer_than_control'] else 'not fewer'}): "
                     f"**{'PASS' if x['pass'] else 'FAIL'}**")
    lines += ["", "## What the score flags", ""]
    if "auroc_planted" in sa:
        lines.append(f"* Planted images among {sa['n_unique']} unique training images: AUROC "
                     f"{_f(sa['auroc_planted'])}; their ranks (0 = highest score): {sa['planted_ranks']}.")
        lines.append(f"* The top-{cfg['clean']['top_k']} flag reached {sa['planted_groups_flagged']} of "
                     f"{sa['planted_groups']} planted groups (flagging {cfg['clean']['top_k']} samples at random "
                     f"would reach {sa['planted_groups_flagged_if_random']:.1f} on average). Cleaning removed "
                     f"{sa['planted_samples_removed_by_cleaning']} of the {sa['planted_samples']} planted samples, "
                     f"the random control {sa['planted_samples_removed_by_control']}.")
    for crit in CRITERIA:
        e = sa[f"reproduced_{crit}"]
        if "auroc" in e:
            txt = (f"* Images the baseline reproduces ({crit.capitalize()}): {e['n_reproduced']}; AUROC "
                   f"{_f(e['auroc'])}, Spearman with reproduction count {_f(e['spearman'])}")
            if "auroc_not_planted" in e:
                txt += (f"; among images that were not planted ({e['n_reproduced_not_planted']} reproduced): "
                        f"AUROC {_f(e['auroc_not_planted'])}")
            lines.append(txt + ".")
    if r.get("analysis"):
        lines += ["", "Other scores of the same baseline on the unique training images:", "",
                  "| score | settings | NFE/img | s/img | AUROC planted | AUROC reproduced (Carlini) |",
                  "|---|---|---:|---:|---:|---:|"]
        for a in r["analysis"]["methods"]:
            lines.append(f"| {a['label']} | {a['settings']} | {a['nfe']:.0f} | {_f(a['seconds'], '.4f')} "
                         f"| {_f(a.get('auroc_planted'))} | {_f(a.get('auroc_reproduced'))} |")
    lines += ["", "## Figures", ""]
    for f, what in (("memorized_counts.png", "memorized samples per model and criterion"),
                    ("score_hist_planted.png", "score histogram, planted vs not"),
                    ("score_hist_reproduced.png", "score histogram, reproduced by the baseline vs not"),
                    ("score_highest.png", "highest-scored unique training images"),
                    ("score_lowest.png", "lowest-scored unique training images"),
                    ("samples_baseline.png", "samples of the baseline"),
                    ("samples_cleaned.png", "samples of the cleaned model"),
                    ("samples_control.png", "samples of the control")):
        if (Path(r["run_dir"]) / "figures" / f).exists():
            lines.append(f"* [{what}](figures/{f})")
    lines += ["", "## Time", "", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    for st, t in r["timings"].items():
        lines.append(f"| {st} | {_f(t['seconds'], '.1f')} | {_f(t['cpu_seconds'], '.1f')} |")
    lines.append(f"| **all stages** | {r['stage_seconds_total']:.1f} | |")
    lines += ["", "Configuration: `config.toml`; everything in JSON: `results.json`.", ""]
    return "\n".join(lines)
