"""Tag the images a model is most likely to reproduce (the highest scores)."""
from __future__ import annotations

import numpy as np


def flag_high_risk(samples, score_field: str | None = None, *, top_k: int | None = None,
                   percentile: float | None = None, threshold: float | None = None,
                   tag: str = "high_risk", view_name: str | None = None, clear: bool = True,
                   unique: bool = False, group_field: str = "duplicate_group"):
    """Tag high-risk samples and save a view of them, highest score first.

    ``score_field`` defaults to the field of :data:`curate.scores.DEFAULT_KIND`, the kind
    that :func:`compute_score` and ``curate score`` compute when none is named.

    Exactly one rule:

    * ``top_k``: the k highest scores (ties broken by sample id, so the set is stable);
      with ``unique=True`` the k highest-scored *images*: the members of one duplicate
      group (equal ``group_field``, as :func:`dedupe` sets it) count once and are
      flagged together, so 32 copies of one image take one of the k places, not 32;
    * ``percentile``: scores >= numpy's ``percentile(scores, p)`` (linear interpolation),
      e.g. 95 flags about the top 5%;
    * ``threshold``: scores >= threshold.

    Samples without a score (failed or not scored) are never flagged. With
    ``clear=True`` the tag is first removed from every sample of ``samples`` so a
    re-flag replaces the previous one. The view is saved on the dataset under
    ``view_name`` (default: the tag) and returned.
    """
    from curate.brain._names import check_tag, require_score_field

    check_tag(tag, "tag")
    check_tag(view_name or tag, "view_name")
    rules = {"top_k": top_k, "percentile": percentile, "threshold": threshold}
    given = [k for k, v in rules.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of top_k, percentile, threshold (got {given or 'none'})")
    score_field = require_score_field(samples, score_field)
    scored = samples.exists(score_field)
    ids, scores = scored.values(["id", score_field])
    scores = np.asarray(scores, dtype=np.float64)
    if unique and top_k is None:
        raise ValueError("unique=True counts duplicate groups for top_k; give top_k")
    if top_k is not None:
        if int(top_k) != top_k or top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
        # Sort by (-score, id): deterministic when scores tie.
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
        if unique:
            chosen = _top_groups(scored, ids, order, int(top_k), group_field)
        else:
            chosen = [ids[i] for i in order[: int(top_k)]]
    else:
        if percentile is not None:
            if not 0 <= percentile <= 100:
                raise ValueError(f"percentile must be in [0, 100], got {percentile}")
            cut = float(np.percentile(scores, percentile)) if len(scores) else np.inf
        else:
            cut = float(threshold)
        chosen = [i for i, s in zip(ids, scores) if s >= cut]
    dataset = samples._dataset
    if clear:
        samples.untag_samples(tag)
    if chosen:
        dataset.select(chosen).tag_samples(tag)
    view = samples.match_tags(tag).sort_by(score_field, reverse=True)
    dataset.save_view(view_name or tag, view, overwrite=True)
    return dataset.load_saved_view(view_name or tag)


def _top_groups(scored, ids: list, order: list[int], k: int, group_field: str) -> list:
    """Ids of the k best *images* in ``order``: samples sharing a ``group_field`` value are one
    image (every member is returned once its best member is among the k)."""
    if group_field not in scored.get_field_schema():
        raise ValueError(f"unique=True needs the duplicate groups in {group_field!r}; run "
                         "curate.brain.dedupe first (or name the field with group_field=)")
    group_of = dict(zip(*scored.values(["id", group_field])))
    keys, chosen = set(), []
    for i in order:
        g = group_of.get(ids[i])
        key = ("group", g) if g is not None else ("sample", ids[i])
        if key not in keys:
            if len(keys) == k:
                continue  # the k images are chosen; only their remaining members may follow
            keys.add(key)
        chosen.append(ids[i])
    return chosen
