"""The edit-robust nearest reference image of each query image: the smallest aligned
distance (:mod:`curate.duplicates.align`) among a few candidates.

Candidates of a query: its ``candidates`` nearest reference keys (with ``mirror``, also
those of its mirror image) plus any indices the caller adds (e.g. the pixel-nearest
image). Each candidate pair's aligned distance is computed as in
:func:`curate.duplicates.find_pairs` (coarse search, refined within ``refine_below``);
the nearest is the smallest. A shifted, cropped or re-coloured copy of a reference image
is found even when its pixel-nearest neighbour is another image.

:meth:`AlignedNearest.threshold` gives dedupe's rule for calling a pair a copy: the
descriptor's default threshold, capped at ``relative`` times the reference set's
background distance (how close unrelated images of this set come; about 0.19 on 8x8
digits, 0.55 on CIFAR-10), so that look-alike low-detail images are not called copies.

Memory: keys (n, d) and canvases (n, C, work/2, work/2) float32 of the n reference images.
"""
from __future__ import annotations

import numpy as np

from curate.duplicates.align import Aligner
from curate.duplicates.choices import DEFAULT_RELATIVE, DEFAULT_THRESHOLD
from curate.duplicates.descriptor import Descriptor, DescriptorSpec
from curate.duplicates.search import reference_sample
from curate.duplicates.verify import PairVerifier


class AlignedNearest:
    """Reference images (n, C, H, W) in [-1, 1] (numpy or torch), described once."""

    def __init__(self, reference, *, spec: DescriptorSpec | None = None, mirror: bool = True,
                 candidates: int = 4, refine: float = 0.15, chunk: int = 1024):
        self.descriptor = Descriptor(spec)
        self.mirror, self.candidates, self.refine = bool(mirror), int(candidates), float(refine)
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        ref = np.asarray(reference)
        parts = [self.descriptor.describe(ref[s:s + chunk]) for s in range(0, len(ref), chunk)]
        self.keys = np.concatenate([p[0] for p in parts])
        self.canvases = np.concatenate([p[1] for p in parts])
        self.perm = self.descriptor.mirror_permutation(self.canvases.shape[1]) if self.mirror else None
        self.aligner = Aligner(self.descriptor.spec)
        self._background = None

    @property
    def n(self) -> int:
        return len(self.keys)

    def _candidates(self, qkeys: np.ndarray, k: int, exclude=None) -> np.ndarray:
        """(q, k) reference rows with the largest key similarity (mirror counted)."""
        sims = qkeys @ self.keys.T
        if self.perm is not None:
            sims = np.maximum(sims, qkeys[:, self.perm] @ self.keys.T)
        if exclude is not None:
            sims[np.arange(len(qkeys)), exclude] = -np.inf
        k = min(k, sims.shape[1])
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    def _distances(self, qcanvases: np.ndarray, cand: list[list[int]], refine_below: float) -> list[np.ndarray]:
        """Aligned distances of each query to its candidate rows."""
        rows = sorted({j for c in cand for j in c})
        row_of = {j: i for i, j in enumerate(rows)}
        canv = np.concatenate([self.canvases[rows], qcanvases])
        q0 = len(rows)
        pairs = np.array([(row_of[j], q0 + i) for i, c in enumerate(cand) for j in c], dtype=np.int64)
        d = PairVerifier(self.aligner, canv, self.mirror, refine_below).distances(pairs)
        out, s = [], 0
        for c in cand:
            out.append(np.asarray(d[s:s + len(c)], dtype=np.float64))
            s += len(c)
        return out

    def nearest(self, queries, extra=None, *, refine_below: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, C, H, W) in [-1, 1]; extra (q,) or (q, e) more candidate rows or None.

        Returns ``(index, distance)``: (q,) int64 reference rows and (q,) float64 aligned
        distances (exact within ``refine_below``, default the threshold + ``refine``;
        upper bounds beyond)."""
        q = np.asarray(queries)
        if len(q) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        qkeys, qcanv = self.descriptor.describe(q)
        cand = self._candidates(qkeys, self.candidates).tolist()
        if extra is not None:
            ex = np.asarray(extra, dtype=np.int64).reshape(len(q), -1)
            cand = [list(dict.fromkeys(c + e)) for c, e in zip(cand, ex.tolist())]
        below = self.threshold() + self.refine if refine_below is None else refine_below
        dists = self._distances(qcanv, cand, below)
        best = [int(np.argmin(d)) for d in dists]
        index = np.array([c[b] for c, b in zip(cand, best)], dtype=np.int64)
        return index, np.array([d[b] for d, b in zip(dists, best)], dtype=np.float64)

    def background(self, rank: int = 3, k: int = 10) -> float:
        """Median over up to 512 reference images (chosen by a hash of their keys) of the
        rank-th smallest aligned distance to the other reference images (as dedupe's)."""
        if self._background is None:
            ref = reference_sample(self.keys)
            cand = self._candidates(self.keys[ref], max(k, rank) + 1, exclude=ref).tolist()
            cand = [[j for j in c if j != r][:max(k, rank)] for c, r in zip(cand, ref.tolist())]
            dists = self._distances(self.canvases[ref], cand, -1.0)  # coarse: upper bounds suffice
            kth = [np.sort(d)[rank - 1] for d in dists if len(d) >= rank]
            self._background = float(np.median(kth)) if kth else float("inf")
        return self._background

    def threshold(self, threshold: float | None = None, relative: float | None = DEFAULT_RELATIVE) -> float:
        """dedupe's copy threshold: ``threshold`` (default the descriptor's), capped at
        ``relative`` x :meth:`background` (None: no cap)."""
        t = DEFAULT_THRESHOLD["descriptor"] if threshold is None else float(threshold)
        if relative is not None and self.n > 1:
            t = min(t, relative * self.background())
        return t
