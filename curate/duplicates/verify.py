"""Pair verification: the aligned distance (:mod:`curate.duplicates.align`) of candidate
pairs, a coarse window search for every pair in batches of images, then a local search from
the best coarse window for the pairs that may be duplicates (in worker processes when there
are many). Used by :mod:`curate.duplicates.search`."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp

import numpy as np

try:  # installed with scikit-learn; without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    import contextlib

    def threadpool_limits(*args, **kwargs):
        return contextlib.nullcontext()


from curate.duplicates.align import Aligner
from curate.duplicates.descriptor import default_threads


class PairVerifier:
    """Aligned distances (:mod:`curate.duplicates.align`) of pairs of rows of ``canvases``
    (n, C, h, h) from :meth:`Descriptor.describe`, images processed in batches:
    ``PairVerifier(Aligner(spec), canvases, mirror, refine_below).distances(pairs)`` -> (P,)
    float64 for ``pairs`` (P, 2) of row indices; exact below ``refine_below`` (the local
    search refines them), upper bounds above it (``math.inf``: every pair exact)."""

    def __init__(self, aligner: Aligner, canvases: np.ndarray, mirror: bool, refine_below: float,
                 batch: int = 32, workers: int | None = None, parallel_min: int = 4096):
        self.al, self.canvases, self.mirror = aligner, canvases, mirror
        self.refine_below, self.batch = refine_below, batch
        self.workers = workers or default_threads()
        self.parallel_min = parallel_min  # refinements from which worker processes pay off
        self._base: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _bases(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Whole-image thumbnails (len(rows), d) of canvases rows at the fine and at the
        coarse blur, each computed once."""
        missing = [r for r in rows if r not in self._base]
        for s in range(0, len(missing), 1024):
            part = missing[s:s + 1024]
            c = self.canvases[part]
            for r, f, g in zip(part, self.al.base(c), self.al.base(c, coarse=True)):
                self._base[r] = (f, g)
        return (np.stack([self._base[r][0] for r in rows]), np.stack([self._base[r][1] for r in rows]))

    def distances(self, pairs: np.ndarray, progress=None) -> np.ndarray:
        """(P, 2) -> (P,) aligned distances."""
        if len(pairs) == 0:
            return np.zeros(0)
        al = self.al
        # both directions of every pair, grouped by the image whose windows move
        src = np.concatenate([pairs[:, 0], pairs[:, 1]])
        dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
        order = np.argsort(src, kind="stable")
        src, dst, pid = src[order], dst[order], order
        images, starts = np.unique(src, return_index=True)
        ends = np.append(starts[1:], len(src))
        bases, coarse_bases = self._bases(np.unique(pairs).tolist())
        row_of = {r: i for i, r in enumerate(np.unique(pairs).tolist())}
        dst_rows = np.array([row_of[d] for d in dst.tolist()], dtype=np.int64)
        best = np.empty(len(src), np.float32)
        arg = np.empty(len(src), np.int64)
        bases32 = coarse_bases.astype(np.float32)

        def coarse(s: int) -> int:
            """Best coarse window of each direction whose moving image is in batch s."""
            rows = images[s:s + self.batch]
            wins = al.windows(self.canvases[rows], self.mirror)  # (b, W', d)
            for w, a, e in zip(wins, starts[s:s + self.batch], ends[s:s + self.batch]):
                sims = w @ bases32[dst_rows[a:e]].T  # (W', partners)
                j = sims.argmax(0)
                arg[a:e] = j
                best[a:e] = sims[j, np.arange(e - a)]
            return len(rows)

        # small matrices: one BLAS thread each, and the batches spread over the cores
        with threadpool_limits(1, user_api="blas"), cf.ThreadPoolExecutor(self.workers) as pool:
            for done in pool.map(coarse, range(0, len(images), self.batch)):
                if progress:
                    progress(done)
        # back to pair order: column 0 = first image's windows moved, 1 = second's
        P = len(pairs)
        sim2 = np.empty((P, 2))
        arg2 = np.empty((P, 2), np.int64)
        side = (pid >= P).astype(np.int64)
        sim2[pid % P, side] = best
        arg2[pid % P, side] = arg
        ra = np.array([row_of[a] for a in pairs[:, 0].tolist()])
        rb = np.array([row_of[b] for b in pairs[:, 1].tolist()])
        # the coarse best decides which pairs are refined; the unmoved distance is exactly
        # 0 for identical images
        coarse = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sim2.max(1)))
        unmoved = np.linalg.norm(bases[ra] - bases[rb], axis=1)
        out = coarse.copy()
        todo = np.nonzero((coarse <= self.refine_below) | (unmoved <= self.refine_below))[0]
        state = (al, self.canvases, pairs, bases, ra, rb, arg2)
        if self.workers > 1 and len(todo) >= self.parallel_min and "fork" in mp.get_all_start_methods():
            refined = _refine_in_processes(state, todo, self.workers)
        else:
            refined = _refine_rows(state, todo)
        out[todo] = np.minimum(unmoved[todo], refined)
        return out


_STATE = None  # what forked refinement workers read (set just before the fork)


def _refine_rows(state, rows: np.ndarray) -> np.ndarray:
    """The local search (:meth:`Aligner.refine_many`) of pairs ``rows`` in both directions
    from their best coarse windows: (len(rows),) the smaller refined distance of each."""
    al, canvases, pairs, bases, ra, rb, arg2 = state
    W = al.n_windows
    both = []
    for k, (moved, target) in enumerate(((pairs[rows, 0], bases[rb[rows]]), (pairs[rows, 1], bases[ra[rows]]))):
        j = arg2[rows, k]
        starts = np.column_stack([(j >= W).astype(np.float64), al.params[j % W]])  # flip, zoom, x, y
        both.append(al.refine_many(canvases[moved], target, starts))
    return np.minimum(both[0], both[1])


def _refine_chunk(rows: np.ndarray) -> np.ndarray:
    return _refine_rows(_STATE, rows)


def _refine_in_processes(state, rows: np.ndarray, workers: int) -> np.ndarray:
    """:func:`_refine_rows` split over forked processes (the local search steps through many
    small numpy calls: threads would wait on the GIL). Same numbers as one process."""
    global _STATE
    _STATE = state
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_refine_chunk, np.array_split(rows, workers * 8))
    finally:
        _STATE = None
    return np.concatenate(parts)
