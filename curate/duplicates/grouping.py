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
