"""The paper's second experiment, measurable on CPU: memorized vs not memorized images.

    python -m curate.recipes.memorized_vs_not                # preset digits (CPU)
    python -m curate.recipes.memorized_vs_not --config smoke --out /tmp/mvn

A digits training set in which a few images are planted many times over (exact
copies); a U-Net trained on it; enough generated samples to find, by the Carlini and
Gu criteria, which training images the model reproduces (the ground truth); then every
scoring method on the unique training images: memorized vs not (AUROC, TPR at 1 % FPR,
Welch t-test), Spearman with the reproduction counts, where the planted duplicates rank,
and every method beside the labels' split-half noise ceiling (how well one half of the
samples' counts predicts the other's: no score can be judged above it).

Stages: data, train, memorization, score_<method>, report (see overfit_check).
"""
from __future__ import annotations

import sys
import time

import torch

from curate.recipes import _config
from curate.recipes._paper import (
    device_of, get_model, load_candidates, load_tensors, source_size, log, report, save_tensors, stage_memorization,
    stage_score,
)

RECIPE = "memorized_vs_not"


def stage_data(cfg: dict, run) -> dict:
    """n_unique distinct images; the first n_planted of them appear ``copies`` times in training."""
    d = cfg["data"]
    n_source = source_size(d)
    n_unique, n_planted, copies = int(d["n_unique"]), int(d["n_planted"]), int(d["copies"])
    if not 0 <= n_planted <= n_unique <= n_source or copies < 1 or n_unique < 1:
        raise ValueError(f"need 0 <= n_planted <= n_unique <= {n_source}, n_unique >= 1 and copies >= 1")
    g = torch.Generator().manual_seed(int(d.get("subset_seed", cfg["seed"])))
    idx = torch.randperm(n_source, generator=g)[:n_unique]
    unique = load_candidates(d, idx.tolist())
    # Exact duplicates can hide inside the dataset itself; the planted ones must be new.
    from curate.memorization import duplicate_groups

    group, first = duplicate_groups(unique)
    if first.numel() != n_unique:
        unique = unique[first]
    planted = torch.arange(n_planted)
    train = torch.cat([unique, unique[planted].repeat_interleave(copies - 1, dim=0)])
    save_tensors(run.file("data.safetensors"), unique=unique, train=train, planted=planted, source_idx=idx)
    return {"n_unique": unique.shape[0], "n_train": train.shape[0], "n_planted": n_planted, "copies": copies}


def against_ceiling(res, criterion: str, n_unique: int, min_count: int, meta: dict, scores: dict) -> tuple:
    """The labels' split-half noise ceiling (:mod:`curate.reproduction.ceiling`: even and odd
    samples; an image is memorized in a half when copied there at least half the run's
    ``min_count`` times, rounded up: the run's rate) and every method judged on the same
    footing, with its fraction of the ceiling: (results.json entries, a rich Table)."""
    from rich.table import Table

    from curate.reproduction.ceiling import noise_ceiling, score_on_halves, split_counts

    ca, cb = (c[:n_unique] for c in split_counts(res, criterion))
    half_min = max(1, -(-min_count // 2))
    c = noise_ceiling(ca, cb, half_min)
    table = Table(title=f"against the labels' noise ceiling: AUROC {c.auroc:.3f}, Spearman {c.spearman:.3f} "
                        f"(half A's counts predicting half B's; {c.positives_a} / {c.positives_b} of {n_unique} "
                        f"images copied >= {half_min} times in the halves)")
    for col in ("method", "AUROC (half labels)", "fraction of ceiling", "Spearman (half counts)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    rows = {}
    for name, m in meta.items():
        r = score_on_halves(scores[f"score.{name}"], ca, cb, half_min)
        r["fraction_of_ceiling"] = r["auroc"] / c.auroc if c.auroc == c.auroc and c.auroc > 0 else None
        rows[m["label"]] = r
        table.add_row(m["label"], *(("-" if v is None or v != v else f"{v:.3f}")
                                    for v in (r["auroc"], r["fraction_of_ceiling"], r["spearman"])))
    return {"noise_ceiling": {**c.to_dict(), "min_count_per_half": half_min}, "against_ceiling": rows}, table


def main(argv: list[str] | None = None) -> dict | None:
    return _config.run_recipe(RECIPE, __doc__.splitlines()[0], "digits", argv, _main)


def _main(cfg: dict, run) -> dict:
    t_start = time.perf_counter()
    run.stage("data", lambda: stage_data(cfg, run))
    data = load_tensors(run.file("data.safetensors"))
    unique, train, planted = data["unique"], data["train"], data["planted"]
    dev = device_of(cfg)
    model = get_model(cfg, run, train)
    mem = run.stage("memorization", lambda: stage_memorization(cfg, run, model, train.to(dev)))
    log(f"  memorization: {mem['memorized_samples_carlini']} of {mem['n_samples']} samples are copies (Carlini), "
        f"{mem['memorized_images_carlini']} distinct training images reproduced")

    from curate.memorization import Memorization

    res = Memorization.load(run.file("memorization"))
    criterion = cfg["memorization_criterion"]
    # train = unique images first, then the extra planted copies: counts[:n_unique] are per unique image.
    counts = res.counts(criterion)[: unique.shape[0]].to(torch.float64)
    positive = counts >= int(cfg["min_count"])
    if positive.all() or not positive.any():
        raise SystemExit(
            f"error: {int(positive.sum())} of {unique.shape[0]} images are memorized by the {criterion} criterion; "
            "need both groups (generate more samples, or train longer / shorter)"
        )
    meta = stage_score(cfg, run, model, unique.to(dev))

    from curate.recipes._paper import load_scores

    scores = load_scores(run, meta)
    n = unique.shape[0]
    ceiling, ceiling_table = against_ceiling(res, criterion, n, int(cfg["min_count"]), meta, scores)
    decile = max(1, n // 10)
    planted_ranks = {}
    for name in meta:
        s = scores[f"score.{name}"]
        order = torch.argsort(torch.nan_to_num(s, nan=-torch.inf), descending=True, stable=True)
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n)
        planted_ranks[name] = {
            "ranks": rank[planted].tolist(),
            "fraction_in_top_decile": float((rank[planted] < decile).double().mean()) if planted.numel() else None,
        }
    result = report(
        cfg, run, recipe=RECIPE, images=unique, positive=positive, meta=meta, sweeps={}, counts=counts,
        title=f"memorized vs not ({criterion} criterion, {int(positive.sum())} memorized of {n})",
        pos_label="memorized", neg_label="not",
        extra={"memorization": mem, "criterion": criterion, "n_memorized": int(positive.sum()),
               "planted": planted_ranks, "top_decile_size": decile, **ceiling,
               "wall_seconds": time.perf_counter() - t_start},
    )
    from rich.console import Console

    Console(width=160).print(ceiling_table)
    if not planted.numel():
        return result
    best = next(k for k, m in meta.items() if m["label"] == result["best"]["name"])
    log(f"planted duplicates ({planted.numel()}) ranked by the best method ({result['best']['name']}): "
        f"{planted_ranks[best]['ranks']} of {n}; in the top decile (rank < {decile}): "
        f"{planted_ranks[best]['fraction_in_top_decile']:.0%}")
    for name, pr in planted_ranks.items():
        log(f"  {meta[name]['label']:<28} planted in top decile: {pr['fraction_in_top_decile']:.0%}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
