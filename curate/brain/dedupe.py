"""Near-duplicate groups among flagged images and against the rest of the dataset.

Distance: the normalised pixel L2 ``|x - y| / sqrt(D)`` of images in [-1, 1]
(the root-mean-square pixel difference; 0 for identical images, 2 at most), found
by an exact, chunked search in float64: every query image is compared with every
image of the collection, never an approximation.

Groups: pairs within ``threshold`` where at least one image is a query image are
edges; groups are the connected components with two or more members. In each group
one sample is kept by ``keep``; the others get ``tag``. Every member gets the group
number in ``group_field``.
"""
from __future__ import annotations

import numpy as np
import torch

KEEP_RULES = ("lowest_score", "highest_score", "first")


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_pairs(query: torch.Tensor, pool: torch.Tensor, threshold: float, *,
               memory_mb: float = 256.0) -> list[tuple[int, int, float]]:
    """All (i, j, d) with d = |query_i - pool_j| / sqrt(D) <= threshold.

    query (q, D) and pool (n, D); computed chunk by chunk in float64 via
    |x|^2 + |y|^2 - 2 x.y, then re-checked with explicit differences so the
    expansion's rounding cannot move a pair across the threshold.
    """
    q, D = query.shape
    qd = query.to(torch.float64)
    qn = (qd * qd).sum(1, keepdim=True)
    chunk = max(1, int(memory_mb * 2**20 / 8 // max(1, q + D)))
    slack = 1e-6 * D  # generous bound on the expansion's rounding, in squared units
    out = []
    for start in range(0, pool.shape[0], chunk):
        pc = pool[start:start + chunk].to(torch.float64)
        d2 = qn + (pc * pc).sum(1) - 2.0 * qd @ pc.T  # (q, c)
        cand = (d2 <= threshold * threshold * D + slack).nonzero().tolist()
        for i, j in cand:
            d = float(torch.linalg.vector_norm(qd[i] - pc[j])) / np.sqrt(D)
            if d <= threshold:
                out.append((i, start + j, d))
    return out


def dedupe(samples, *, threshold: float = 0.1, query_tag: str | None = "high_risk",
           tag: str = "duplicate", keep: str = "lowest_score", score_field: str = "volume_growth",
           group_field: str = "duplicate_group", size=None, channels=None, resize: bool = False,
           batch_size: int = 256, clear: bool = True) -> list[list[str]]:
    """Find near-duplicate groups and tag all but one member of each.

    Args:
        samples: the collection to search (a dataset or view).
        threshold: largest normalised pixel L2 distance of a duplicate pair
            (0.1 = a 5% RMS pixel difference on the [-1, 1] scale).
        query_tag: the images whose duplicates are searched (default: those
            :func:`flag_high_risk` tagged); None searches all pairs.
        tag: put on every group member except the kept one.
        keep: which member stays untagged: ``"lowest_score"`` (the least
            reproducible copy; members without a score come after scored ones),
            ``"highest_score"``, or ``"first"`` (the first in ``samples``' order).
            Ties go to the member earlier in ``samples``' order.
        score_field: the score that ``keep`` reads.
        group_field: int field set to the group number (0, 1, ...) on members.
        size, channels, resize: the image policy of :mod:`curate.data.loader`.
        clear: first remove ``tag`` and ``group_field`` from ``samples``.

    Returns:
        the groups, each a list of sample ids with the kept sample first.
    """
    import fiftyone.core.fields as fof

    from curate.brain._names import check_field_name, check_tag
    from curate.data.loader import load_images

    check_tag(tag, "tag")
    check_field_name(group_field, "group_field")
    old = samples._dataset.get_field_schema().get(group_field)
    if old is not None and not isinstance(old, fof.IntField):
        raise ValueError(f"group_field {group_field!r} already holds a {type(old).__name__}; "
                         "choose another name")
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    ids, images, failed = load_images(samples, batch_size=batch_size, size=size, channels=channels,
                                      resize=resize)
    if failed:
        raise ValueError(f"{len(failed)} image(s) could not be read for dedupe, e.g. "
                         f"{next(iter(failed.items()))}; fix them or exclude them from the view")
    flat = images.reshape(len(ids), -1)
    pos = {sid: i for i, sid in enumerate(ids)}
    if query_tag is None:
        qidx = list(range(len(ids)))
    else:
        qidx = [pos[s] for s in samples.match_tags(query_tag).values("id") if s in pos]
    uf = _UnionFind(len(ids))
    for i, j, _ in near_pairs(flat[qidx], flat, threshold) if qidx else []:
        uf.union(qidx[i], j)
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(uf.find(i), []).append(i)
    comps = sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])

    scores = {}
    if keep != "first":
        if score_field not in samples.get_field_schema():
            raise ValueError(f"keep={keep!r} needs the score field {score_field!r}")
        scores = dict(zip(*samples.values(["id", score_field])))
    sign = 1.0 if keep == "lowest_score" else -1.0

    def rank(i: int):
        s = scores.get(ids[i])
        if keep == "first":
            return (0, 0.0, i)
        return (s is None, sign * s if s is not None else 0.0, i)

    groups = [[ids[i] for i in sorted(m, key=rank)] for m in comps]

    dataset = samples._dataset
    if clear:
        samples.untag_samples(tag)
        if group_field in dataset.get_field_schema():
            samples.set_field(group_field, None).save()
    dataset.add_sample_field(group_field, fof.IntField)
    drop = [sid for g in groups for sid in g[1:]]
    if drop:
        dataset.select(drop).tag_samples(tag)
    numbers = {sid: n for n, g in enumerate(groups) for sid in g}
    if numbers:
        dataset.set_values(group_field, numbers, key_field="id")
    return groups
