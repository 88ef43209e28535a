"""``report.md`` of the clean-and-retrain loop, written from ``results.json``'s dict."""
from __future__ import annotations

import math
from pathlib import Path

from curate.recipes.clean.settings import ARM_LABEL, CRITERIA, CRITERION_TEXT, criterion_name, score_settings


def _f(x, spec=".3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _ci(pair) -> str:
    return f"[{pair[0]:.3g}, {pair[1]:.3g}]"


def dedupe_rule(dd: dict) -> str:
    """How the dedupe arm's pairs were decided, from the clean stage's ``dedupe`` settings."""
    from curate.duplicates.choices import DEFAULT_THRESHOLD

    method = dd.get("method", "descriptor")
    thr = dd.get("threshold")
    thr = DEFAULT_THRESHOLD[method] if thr is None else thr
    if method == "pixel":
        return f"normalised pixel L2 <= {thr}"
    text = f"aligned descriptor distance <= {thr}"
    applied = dd.get("threshold_applied")
    if applied is not None and applied < thr:
        text += f", capped at {applied:.3f} by the collection's background distance ({dd['background']:.3f})"
    return text + (", mirrored copies included" if dd.get("mirror") else ", mirroring off")


def markdown(r: dict) -> str:
    cfg, d, c, sa, mem = r["config"], r["data"], r["clean"], r["score_analysis"], r["memorization"]
    s, m, mc = cfg["score"], cfg["model"], cfg["memorization"]
    seeds, k = r["seeds"], c["top_k"]
    lines = [f"# What the score adds beyond dedupe: {r['recipe']}", ""]
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
    dd = c["dedupe"]
    lines += ["## Arms", "",
              f"* **baseline**: every training sample ({c['n_train']}).",
              f"* **dedupe**: the whole set de-duplicated (`curate.brain.dedupe`, every pair, {dedupe_rule(dd)}, "
              f"keep `{dd['keep']}`): {c['n_groups']} groups, {c['n_duplicates_tagged']} "
              f"extra copies tagged `duplicate` and removed; {c['n_unique']} images left.",
              f"* **dedupe_score**: the dedupe arm minus its top-{k} unique images by `{sa['field']}` "
              f"({score_settings(s)}, computed once by the `{r['score_model']}` model on every training sample; "
              f"tag `high_risk`, `flag_high_risk(unique=True)`). This is the recommended cleaning: it was exported "
              f"to `export/` ({c['n_exported']} images) and its models train on the re-imported export.",
              f"* **dedupe_random**: the dedupe arm minus {c['n_random_removed']} unique images chosen at random "
              f"(seed {cfg['seed']}, tag `random_removed`).", "",
              "Only the scores and the dedupe decide what goes."]
    if c.get("constant_size"):
        lines += ["", f"**Constant size**: the {c['n_replacements']} images removed by score and the "
                  f"{c['n_random_removed']} removed at random are each replaced by the same {c['n_replacements']} "
                  "images of an unused pool (chosen at random, tag `replacement`), so the dedupe, score and random "
                  "arms train on sets of one size and differ only in which images went. Copies of the "
                  "replacements are counted apart (last columns below), not as memorized samples."]
    lines += [""]
    seeds_txt = (f"training seed {seeds[0]}" if len(seeds) == 1 else
                 f"training seeds {', '.join(map(str, seeds))} (the mean, min-max over seeds, and the pooled interval)")
    lines += ["## Memorized samples", "",
              f"Each arm was trained with one budget (U-Net `{m['preset']}`, {m['steps']} steps of batch "
              f"{m['batch_size']}) for {seeds_txt}; each model generated {mc['samples']} samples "
              f"({mc['method']}, {mc['steps']} steps; the arms of one training seed from the same noise). A sample "
              "is memorized when it copies an image of the original training set"
              + (" or its mirror image" if mc.get("include_flips") else "") + ":", ""]
    for crit in CRITERIA:
        lines.append(f"* **{criterion_name(crit)}**: {CRITERION_TEXT[crit]}")
    lines += ["", f"Intervals: 95 % bootstrap over the generated samples ({mem['n_boot']} resamples per training "
              "seed, the same resamples for every arm); across seeds the interval of the mean (sampling noise "
              "only: the spread between training seeds is the min-max).", "",
              "| arm | training images | removed | " + " | ".join(f"memorized ({criterion_name(c)})" for c in CRITERIA)
              + " | images reproduced (Carlini) |",
              "|---|---:|---:|" + "---:|" * len(CRITERIA) + "---:|"]
    arms = mem["arms"]
    for row in r["rows"]:
        a = arms[row["model"]]
        cells = []
        for crit in CRITERIA:
            e = a[crit]
            spread = f" ({e['min']}-{e['max']})" if len(seeds) > 1 else ""
            cells.append(f"{e['mean']:.4g}{spread} {_ci(e['ci'])}")
        lines.append(f"| {ARM_LABEL[row['model']]} | {row['training_images']} | {row['removed']} | "
                     + " | ".join(cells) + f" | {row['images_reproduced_carlini']:.4g} |")
    replaced = bool(c.get("constant_size"))
    lines += ["", "Per model (arm x training seed):", "",
              "| model | " + " | ".join(f"{criterion_name(c)} [95% CI] | of which planted" for c in CRITERIA)
              + " | images reproduced (Carlini) |"
              + ("".join(f" copies of replacements ({criterion_name(c)}) |" for c in CRITERIA) if replaced else ""),
              "|---|" + "---:|---:|" * len(CRITERIA) + "---:|" + ("---:|" * len(CRITERIA) if replaced else "")]
    for key, run in mem["runs"].items():
        arm, seed = run["arm"], str(run["seed"])
        cells = [f"{run[crit]['memorized_samples']} {_ci(arms[arm][crit]['per_seed'][seed]['ci'])} "
                 f"| {run[crit]['memorized_samples_planted']}" for crit in CRITERIA]
        extra = "".join(f" {run[crit]['memorized_samples_of_replacements']} |" for crit in CRITERIA) if replaced else ""
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {run['carlini']['images_reproduced']} |" + extra)
    lines += ["", "## What the score adds beyond dedupe", "",
              f"Reduction = memorized samples of the dedupe arm minus those of the arm that also removed k = {k} "
              f"unique images (mean over training seeds); target: removal by score cuts at least "
              f"{r['score_adds']['carlini']['factor']:g} times as much as random removal.", ""]
    for crit in CRITERIA:
        a = r["score_adds"][crit]
        ratio = "undefined (random removal cut none)" if a["ratio"] is None else f"{a['ratio']:.2f}"
        lines.append(f"* **{criterion_name(crit)}**: by score {a['reduction_score']:.4g} {_ci(a['reduction_score_ci'])}, "
                     f"at random {a['reduction_random']:.4g} {_ci(a['reduction_random_ci'])}, ratio {ratio}; "
                     f"dedupe_random - dedupe_score = {a['random_minus_score']:.4g} {_ci(a['random_minus_score_ci'])} "
                     f"(paired by seed and resample); score - {a['factor']:g} x random = {a['margin']:.4g} "
                     f"{_ci(a['margin_ci'])}: target **{'met' if a['target_met'] else 'NOT met'}**.")
    lines += ["", "## What the score flags", ""]
    if "auroc_planted" in sa:
        gone = sa["planted_groups_gone"]
        lines.append(f"* Planted images among {sa['n_unique']} unique training images: AUROC "
                     f"{_f(sa['auroc_planted'])}; their ranks (0 = highest score): {sa['planted_ranks']}.")
        lines.append(f"* Planted images with no copy left: dedupe_score {gone['dedupe_score']} of "
                     f"{sa['planted_groups']}, dedupe_random {gone['dedupe_random']} (k at random would take "
                     f"{sa['planted_groups_gone_if_random_expected']:.2f} on average), dedupe {gone['dedupe']}.")
    for crit in CRITERIA:
        e = sa[f"reproduced_{crit}"]
        if "auroc" in e:
            txt = (f"* Images the scoring baseline reproduces ({criterion_name(crit)}): {e['n_reproduced']}; AUROC "
                   f"{_f(e['auroc'])}, Spearman with reproduction count {_f(e['spearman'])}")
            if "auroc_not_planted" in e:
                txt += (f"; among images that were not planted ({e['n_reproduced_not_planted']} reproduced): "
                        f"AUROC {_f(e['auroc_not_planted'])}")
            if "noise_ceiling" in e:
                txt += (f". Labels' noise ceiling (half of the samples' counts predicting the other half's "
                        f"labels): AUROC {_f(e['noise_ceiling']['auroc'])}, Spearman "
                        f"{_f(e['noise_ceiling']['spearman'])}; the score on the same footing: AUROC "
                        f"{_f(e['auroc_halves'])}, Spearman {_f(e['spearman_halves'])}")
            lines.append(txt + ".")
    if r.get("analysis"):
        lines += ["", "Other scores of the same baseline on the unique training images:", "",
                  "| score | settings | NFE/img | s/img | AUROC planted | AUROC reproduced (Carlini) |",
                  "|---|---|---:|---:|---:|---:|"]
        for a in r["analysis"]["methods"]:
            lines.append(f"| {a['label']} | {a['settings']} | {a['nfe']:.0f} | {_f(a['seconds'], '.4f')} "
                         f"| {_f(a.get('auroc_planted'))} | {_f(a.get('auroc_reproduced'))} |")
    lines += ["", "## Figures", ""]
    figs = [("memorized_counts.png", "memorized samples per arm and criterion, with intervals"),
            ("score_hist_planted.png", "score histogram, planted vs not"),
            ("score_hist_reproduced.png", "score histogram, reproduced by the scoring baseline vs not"),
            ("score_highest.png", "highest-scored unique training images"),
            ("score_lowest.png", "lowest-scored unique training images")]
    figs += [(f"samples_{key}.png", f"samples of {key}") for key in mem["runs"]]
    for f, what in figs:
        if (Path(r["run_dir"]) / "figures" / f).exists():
            lines.append(f"* [{what}](figures/{f})")
    lines += ["", "## Time", "", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    for st, t in r["timings"].items():
        lines.append(f"| {st} | {_f(t['seconds'], '.1f')} | {_f(t['cpu_seconds'], '.1f')} |")
    lines.append(f"| **all stages** | {r['stage_seconds_total']:.1f} | |")
    lines += ["", "Configuration: `config.toml`; everything in JSON: `results.json`.", ""]
    return "\n".join(lines)

