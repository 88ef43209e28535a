"""The cleaning decisions behind the arms, as FiftyOne tags on the training samples:

* ``duplicate``: :func:`curate.brain.dedupe` of the whole set (all pairs), every member of
  a duplicate group but one (the ``dedupe`` arm leaves them out);
* ``high_risk``: the k highest-scored images of the de-duplicated set
  (:func:`curate.brain.flag_high_risk` with ``unique=True``; the ``dedupe_score`` arm);
* ``random_removed``: k images of the de-duplicated set chosen at random, seeded (the
  ``dedupe_random`` arm);
* ``replacement`` (with ``clean.constant_size``): k images of the unused pool (tag
  ``pool``), chosen at random, seeded, that the ``dedupe_score`` and ``dedupe_random`` arms
  train on in place of the k they removed.

Only the score field and the dedupe decide; ``planted_group`` is never read here.
"""
from __future__ import annotations

import torch

from curate.recipes.clean.settings import ARM_EXCLUDE, REPLACED_ARMS, constant_size, dedupe_kwargs

CLEAN_TAGS = ("duplicate", "high_risk", "random_removed")
REPLACEMENT_TAG = "replacement"


def arm_view(train, arm: str):
    """The training samples of ``arm``: ``train`` minus the samples its tags exclude."""
    excl = ARM_EXCLUDE[arm]
    return train.match_tags(excl, bool=False) if excl else train


def random_unique(view, k: int, seed: int) -> list[str]:
    """Ids of ``k`` samples of ``view`` chosen at random with ``seed``. The draw is over the
    samples sorted by file path, so it depends on neither the database's order nor the
    sample ids (the same files and seed give the same images in any run folder)."""
    ids, paths = view.values(["id", "filepath"])
    order = sorted(range(len(ids)), key=lambda i: paths[i])
    g = torch.Generator().manual_seed(int(seed) + 7919)  # a stream apart from the planting's
    pick = torch.randperm(len(ids), generator=g)[:k].tolist()
    return [ids[order[i]] for i in pick]


def tag_arms(train, cfg: dict, score_field: str, seed: int) -> dict:
    """Tag what each arm removes (see the module doc) and return the counts.

    Raises ValueError when ``clean.top_k`` is not smaller than the de-duplicated set."""
    from curate.brain import dedupe, flag_high_risk

    k = int(cfg["clean"]["top_k"])
    train.untag_samples(list(CLEAN_TAGS))  # a rerun replaces every decision
    kw = dedupe_kwargs(cfg)
    groups = dedupe(train, score_field=score_field, **kw)
    deduped = arm_view(train, "dedupe")
    n_unique = deduped.count()
    if k >= n_unique:
        raise ValueError(f"clean.top_k = {k} but the de-duplicated set holds only {n_unique} images; "
                         "choose a smaller k")
    # In the de-duplicated set every group has one member left, so k images = k samples.
    flagged = flag_high_risk(deduped, score_field, top_k=k, unique=True, tag="high_risk",
                             group_field=kw["group_field"])
    pick = random_unique(deduped, k, seed)
    train._dataset.select(pick).tag_samples("random_removed")
    n_train = train.count()
    kept = {arm: arm_view(train, arm).count() for arm in ARM_EXCLUDE}
    pool = train._dataset.match_tags("pool")
    pool.untag_samples(REPLACEMENT_TAG)
    n_replaced = 0
    if constant_size(cfg):  # the same k fresh images for both arms, drawn apart from the removals
        fresh = random_unique(pool, k, seed + 1)
        train._dataset.select(fresh).tag_samples(REPLACEMENT_TAG)
        n_replaced = len(fresh)
        kept.update({arm: kept[arm] + n_replaced for arm in REPLACED_ARMS})
    dd = dict(kw)
    if kw["method"] == "descriptor":  # the threshold after the background cap, as the run stored it
        info = train._dataset.get_brain_info(kw["brain_key"]).config.curate_dedupe
        dd.update(threshold_applied=info["threshold_applied"], background=info["background"])
    return {"n_train": n_train, "n_groups": len(groups), "n_duplicates_tagged": train.match_tags("duplicate").count(),
            "n_unique": n_unique, "top_k": k, "n_score_removed": flagged.count(), "n_random_removed": len(pick),
            "n_kept": kept, "n_removed": {arm: n_train - n for arm, n in kept.items()},
            "constant_size": constant_size(cfg), "n_replacements": n_replaced, "dedupe": dd}
