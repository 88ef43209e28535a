"""How far to trust a risk score on *this* model: a score field against an audit.

:func:`evaluate_score` reads the audit's generated samples (which training image each
copies, and whether) and the score of each training sample, and returns
:class:`curate.reproduction.ScoreEvaluation` (AUROC, Spearman, precision at k, the
split-half noise ceiling, the isotonic p_reproduce checked on held-out samples). It
stores ``p_reproduce`` on the training samples: the probability that one generated
sample copies the image (expected copies in N samples = N x p_reproduce).

Everything is per unique image (one per exact-duplicate group, ``<audit_key>_group``).
"""
from __future__ import annotations

import numpy as np


def evaluate_score(train, score_field: str | None = None, audit_key: str = "reproductions", *,
                   criterion: str | None = None, p_field: str | None = "p_reproduce", ks=(10, 50, 100)):
    """Judge ``score_field`` (default: :func:`curate.scores.field_of`'s) against the audit.

    Args:
        train: the audited training collection (or a view of it).
        score_field: float field, higher = more at risk.
        audit_key: the audit (:func:`curate.brain.compute_reproductions`).
        criterion: which copies count (default: the audit's criterion).
        p_field: where to store p_reproduce (None: do not store). Deleted with the audit.
        ks: top-k sizes for the precision (k = the number reproduced is always added).

    Returns:
        :class:`curate.reproduction.ScoreEvaluation`; also stored in the audit's results.
    """
    import fiftyone as fo

    from curate.brain._audit_run import AuditRunConfig, load_results, save_results
    from curate.brain._lock import dataset_lock
    from curate.brain._names import check_field_name
    from curate.reproduction import evaluate, halves
    from curate.scores import field_of

    score_field = field_of(None) if score_field is None else score_field
    dataset = train._dataset
    if audit_key not in dataset.list_brain_runs():
        raise ValueError(f"no audit {audit_key!r} on {dataset.name!r}; run compute_reproductions first")
    cfg = dataset.get_brain_info(audit_key).config
    if not isinstance(cfg, AuditRunConfig):
        raise ValueError(f"{audit_key!r} is no reproduction audit")
    res = load_results(dataset, audit_key)
    if res is None or not res.complete:
        raise ValueError(f"the audit {audit_key!r} is not finished; run compute_reproductions again to resume")
    criterion = criterion or cfg.criterion
    if criterion not in cfg.criteria:
        raise ValueError(f"criterion must be one of {cfg.criteria}, got {criterion!r}")
    if score_field not in dataset.get_field_schema():
        raise ValueError(f"no field {score_field!r} on {dataset.name!r}; compute the score first")
    if p_field is not None:
        check_field_name(p_field, "p_field")
        if p_field in cfg.train_fields() or p_field == score_field:
            raise ValueError(f"p_field {p_field!r} collides with the audit's or the score's field")

    # One score per unique image: the group's first training sample (duplicates score alike).
    gkey = f"{audit_key}_group"
    ids, groups, scores = train.exists(gkey).values(["id", gkey, score_field])
    if not ids:
        raise ValueError(f"no sample of this collection was audited by {audit_key!r}")
    n_groups = int(max(groups)) + 1
    score = np.full(n_groups, np.nan)
    seen = np.zeros(n_groups, bool)
    for g, s in zip(groups, scores):
        if not seen[g]:
            seen[g] = True
            score[g] = np.nan if s is None else float(s)
    # Copies per group in half A (even sample index) and half B (odd).
    gen = fo.load_dataset(cfg.generated_dataset).exists("nearest_group")
    gcol = "aligned_nearest_group" if criterion == "aligned" else "nearest_group"
    index, near, copy = gen.values(["index", gcol, f"copy_{criterion}"])
    index, near, copy = np.asarray(index), np.asarray(near, dtype=np.int64), np.asarray(copy, dtype=bool)
    in_a = halves(index)
    counts_a = np.bincount(near[copy & in_a], minlength=n_groups)
    counts_b = np.bincount(near[copy & ~in_a], minlength=n_groups)
    keep = seen  # groups with a sample in this collection
    ev = evaluate(score[keep], counts_a[keep], counts_b[keep], int(in_a.sum()), int((~in_a).sum()), ks=ks)

    with dataset_lock(dataset):
        p_fields = list(res.p_fields)
        if p_field is not None:
            import fiftyone.core.fields as fof

            p_of_group = np.full(n_groups, np.nan)
            p_of_group[keep] = ev.p
            if p_field not in dataset.get_field_schema():
                dataset.add_sample_field(p_field, fof.FloatField)
            dataset.set_values(p_field, {i: (None if np.isnan(p_of_group[g]) else float(p_of_group[g]))
                                         for i, g in zip(ids, groups)}, key_field="id")
            p_fields = sorted(set(p_fields) | {p_field})
        evaluations = dict(res.evaluations)
        evaluations[f"{score_field}:{criterion}"] = ev.to_dict()
        save_results(dataset, cfg, evaluations=evaluations, p_fields=p_fields)
    return ev


def audit_keys(samples) -> list[str]:
    """Brain keys of the reproduction audits on ``samples``' dataset."""
    from curate.brain._audit_run import METHOD

    return sorted(samples._dataset.list_brain_runs(method=METHOD))


def score_vs_copies(samples, score_field: str, audit_key: str = "reproductions") -> dict:
    """The points of a score field against an audit's copies, one per unique training image
    of ``samples`` (the panel's and the plot's numbers): ``{"score": [...], "copies": [...],
    "ids": [...]}`` (the ids of each group's first sample), images without a score left out."""
    gkey = f"{audit_key}_group"
    ids, groups, scores, copies = samples.exists(gkey).values(["id", gkey, score_field, audit_key])
    seen, out = set(), {"score": [], "copies": [], "ids": []}
    for i, g, s, c in zip(ids, groups, scores, copies):
        if g in seen or s is None or c is None or not np.isfinite(s):
            continue
        seen.add(g)
        out["score"].append(float(s))
        out["copies"].append(int(c))
        out["ids"].append(i)
    return out
