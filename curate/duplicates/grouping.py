"""Pairs to groups, and the exact pixel-distance search (arrays only).

* :func:`near_pairs`: every (query, pool) pair within a normalised pixel L2 distance,
  exactly, chunk by chunk (the Carlini criterion's distance; ``method="pixel"``);
* :func:`components`: groups = connected components of a pair graph.
"""
from __future__ import annotations

import numpy as np
import torch


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving
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


def components(n: int, pairs) -> list[list[int]]:
    """Connected components with >= 2 members of the graph on 0..n-1 with edges
    ``pairs``; each sorted, ordered by their first member."""
    uf = _UnionFind(n)
    for i, j in pairs:
        uf.union(int(i), int(j))
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


def anchored_groups(n: int, pairs, order=None) -> list[list[int]]:
    """Groups in which every member is a verified duplicate of the group's first (kept)
    member: no single-link chains of look-alikes (a ~ b ~ c with a and c far apart).

    Images are visited in ``order`` (default 0..n-1: the keep rule's preference, best
    first); an image not yet in a group that has a duplicate not yet in a group becomes
    a kept image, and its group is it plus all its duplicates not yet in a group (direct
    pairs only). A member's own other duplicates are left to later groups. Each group is
    returned kept image first, then the others in ``order``; groups in the order they were
    made.
    """
    rank = np.empty(n, dtype=np.int64)
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError("order must be a permutation of 0..n-1")
    rank[order] = np.arange(n)
    partners: dict[int, set[int]] = {}
    for i, j in pairs:
        i, j = int(i), int(j)
        if i != j:
            partners.setdefault(i, set()).add(j)
            partners.setdefault(j, set()).add(i)
    taken = np.zeros(n, dtype=bool)
    groups = []
    for i in order.tolist():
        if taken[i]:
            continue
        free = sorted((j for j in partners.get(i, ()) if not taken[j]), key=lambda j: rank[j])
        if free:
            taken[i] = True
            taken[free] = True
            groups.append([i, *free])
    return groups
