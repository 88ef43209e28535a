"""The measuring stages of the clean-and-retrain loop: memorized samples of every model
(arm x training seed) against the original training set, with bootstrap intervals, and
the optional analysis of other scores on the scoring baseline."""
from __future__ import annotations

import torch

from curate.recipes import _config
from curate.recipes._common import log
from curate.recipes.clean.bootstrap import summarize
from curate.recipes.clean.data import train_view, view_images
from curate.recipes.clean.layout import Layout
from curate.recipes.clean.arms import REPLACEMENT_TAG
from curate.recipes.clean.stages import load_arm_model
from curate.recipes.clean.settings import (ARMS, BASE_ARM, CRITERIA, RANDOM_ARM, SCORE_ARM, TARGET_FACTOR,
                                          bootstrap_seed, constant_size, run_key)


def memorized(x: torch.Tensor, ref: torch.Tensor, include_flips: bool):
    """:func:`find_memorized` of samples ``x`` in ``ref``; with ``include_flips`` against the
    reference and its mirror images too (a model trained with flips may reproduce a
    mirrored image; it counts for the image, index mod n)."""
    from curate.memorization import Memorization, find_memorized

    if not include_flips:
        return find_memorized(x, ref, progress=True)
    n = ref.shape[0]
    res = find_memorized(x, torch.cat([ref, ref.flip(-1)]), progress=True)
    fold = lambda c: c[:n] + c[n:]  # noqa: E731
    return Memorization(
        nn_dist=res.nn_dist, nn_index=res.nn_index % n, carlini_ratio=res.carlini_ratio, gu_ratio=res.gu_ratio,
        carlini=res.carlini, gu=res.gu, counts_carlini=fold(res.counts_carlini), counts_gu=fold(res.counts_gu),
        rms=res.rms, counts_rms=fold(res.counts_rms), group=res.group[:n], settings=dict(res.settings, flips=True))


def memorization(lay: Layout, cfg: dict) -> dict:
    """Every model's samples against the original training set (all samples, duplicates
    included), by Carlini's and Gu's criterion; each result saved under ``memorization/``.
    With ``clean.constant_size`` the replacements join the reference, and copies of them are
    counted apart (``memorized_samples_of_replacements``): the arms are compared on copies
    of the original set.

    Returns per model the counts (memorized samples, of which copy a planted image,
    distinct training images reproduced) and the bootstrap summary (:func:`summarize`)."""
    mc = cfg["memorization"]
    ids, ref = view_images(train_view(lay.name))
    n_orig = len(ids)
    if constant_size(cfg):  # the replacements are training images of two arms: copies of them count apart
        import fiftyone as fo

        rids, rref = view_images(fo.load_dataset(lay.name).match_tags(REPLACEMENT_TAG))
        ids, ref = ids + rids, torch.cat([ref, rref])
    replacement = torch.arange(len(ids)) >= n_orig
    ref_dev = ref.to(lay.device)
    group_of = dict(zip(*train_view(lay.name).values(["id", "planted_group"])))
    planted = torch.tensor([group_of.get(i) is not None for i in ids])
    runs, flags = {}, {arm: {} for arm in ARMS}
    for seed in lay.seeds:
        for arm in ARMS:
            key = run_key(arm, seed)
            x = _config.load_tensors(lay.samples_path(arm, seed))["samples"].to(lay.device)
            res = memorized(x, ref_dev, bool(mc.get("include_flips", False)))
            path = lay.memorization_path(arm, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            res.save(path)
            nn1 = res.nn_index[:, 0].cpu()
            row = {"arm": arm, "seed": seed, "n_samples": res.n_samples}
            flags[arm][seed] = {}
            for crit in CRITERIA:
                mem = res.memorized(crit).cpu()
                of_original = mem & ~replacement[nn1]
                flags[arm][seed][crit] = of_original.numpy()  # the comparison counts copies of the original set
                row[crit] = {
                    "memorized_samples": int(of_original.sum()),
                    "memorized_samples_planted": int((mem & planted[nn1]).sum()),
                    "memorized_samples_of_replacements": int((mem & replacement[nn1]).sum()),
                    "images_reproduced": int(res.group.cpu()[nn1[of_original]].unique().numel()),
                }
            runs[key] = row
            log(f"  {key}: " + ", ".join(f"{c} {row[c]['memorized_samples']}" for c in CRITERIA)
                + f" memorized of {res.n_samples}" + (" (copies of replacements: " + ", ".join(
                    f"{c} {row[c]['memorized_samples_of_replacements']}" for c in CRITERIA) + ")"
                    if replacement.any() else ""))
    stats = summarize(flags, n_boot=int(mc["bootstrap"]), rng_seed=lambda s: bootstrap_seed(lay.seed, s),
                      base=BASE_ARM, score=SCORE_ARM, random=RANDOM_ARM, factor=TARGET_FACTOR)
    return {"runs": runs, **stats}


def analysis(lay: Layout, cfg: dict) -> dict:
    """Other scores of the scoring baseline on the unique training images: AUROC for the
    planted images and for the images that baseline reproduces (Carlini)."""
    from curate.evaluate import auroc, run_methods
    from curate.memorization import Memorization, duplicate_groups

    ids, ref = view_images(train_view(lay.name))
    _, first = duplicate_groups(ref)
    first = first.sort().values
    group_of = dict(zip(*train_view(lay.name).values(["id", "planted_group"])))
    planted = torch.tensor([group_of.get(ids[i]) is not None for i in first.tolist()])
    mem = Memorization.load(lay.memorization_path("baseline", lay.score_seed))
    repro = mem.counts("carlini")[first] > 0
    specs = cfg["analysis"]["methods"]
    res = run_methods(load_arm_model(lay, "baseline", lay.score_seed), ref[first].to(lay.device), specs, seed=lay.seed,
                      progress=True, log=log)
    rows = []
    for name, r in res.items():
        sc = r.scores
        row = {"name": name, "label": r.label, "settings": r.settings, "nfe": r.nfe, "seconds": r.seconds}
        if planted.any():
            row["auroc_planted"] = auroc(sc[planted], sc[~planted])
        if repro.any() and (~repro).any():
            row["auroc_reproduced"] = auroc(sc[repro], sc[~repro])
        rows.append(row)
        log(f"  {r.label:<28} AUROC planted {row.get('auroc_planted', float('nan')):.3f}  "
            f"reproduced {row.get('auroc_reproduced', float('nan')):.3f}")
    return {"methods": rows}
