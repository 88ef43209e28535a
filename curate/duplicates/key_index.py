"""Nearest keys through FAISS, for collections too large for the exact chunked search.

The descriptor's keys are unit vectors, so the nearest keys by Euclidean distance are the
largest inner products. With mirroring a pair counts at its better orientation,
``max(<q, x>, <q, mirror x>)``: the index holds every key and its mirror image (2n rows)
and a hit on row ``n + j`` is image ``j``.

* ``"faiss"``: an exact flat index (``IndexFlatIP``): the same neighbours as the chunked
  search, O(q n d) time;
* ``"faiss_ivf"``: an inverted-file index (``IndexIVFFlat``) with ``nlist`` k-means cells
  trained on a sample of the keys; a query scans the ``nprobe`` nearest cells. Approximate:
  ``curate bench keys`` measures how many of the true nearest keys it returns.
"""
from __future__ import annotations

import math

import numpy as np

#: The chunked exact search is used up to this many keys by ``index="auto"``; beyond it,
#: the approximate FAISS index (when faiss is installed).
AUTO_EXACT_MAX = 100_000
#: IVF cells scanned per query (checked on CIFAR-10 keys by ``curate bench keys``, docs/near-duplicates.md).
DEFAULT_NPROBE = 32


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def default_nlist(n: int) -> int:
    """Cells of the IVF index for ``n`` rows: about sqrt(n), at least 1, at most n / 39
    (k-means wants about 39 training points per cell). More cells make queries cheaper but
    the k-means training dearer (it grows with cells squared): at 2 million rows (a million
    keys and their mirror images) 4 sqrt(n) cells took most of an hour to train on one core."""
    return max(1, min(int(math.sqrt(n)), n // 39))


class FaissKeys:
    """``neighbours(rows, k)`` of the keys (n, d) float32 unit rows, with ``perm`` the mirror
    permutation of key dimensions (None: no mirroring)."""

    def __init__(self, keys: np.ndarray, perm: np.ndarray | None, *, approximate: bool, nlist: int | None = None,
                 nprobe: int = DEFAULT_NPROBE, seed: int = 0):
        import faiss

        self.keys = np.ascontiguousarray(keys, dtype=np.float32)
        self.n, d = self.keys.shape
        self.copies = 1 if perm is None else 2
        if perm is not None:
            self._mirrored = np.ascontiguousarray(self.keys[:, perm])
        data = self.keys if perm is None else np.concatenate([self.keys, self._mirrored])
        if approximate:
            nlist = default_nlist(len(data)) if nlist is None else int(nlist)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            train = data[rng.choice(len(data), min(len(data), 64 * nlist), replace=False)]
            index.cp.seed = seed
            index.train(train)
            index.nprobe = min(int(nprobe), nlist)
        else:
            index = faiss.IndexFlatIP(d)
        index.add(data)
        self.index = index

    def neighbours(self, rows: np.ndarray, k: int) -> np.ndarray:
        """rows (q,) indices into the keys -> (q, min(k, n-1)) nearest other rows, nearest first.

        A row whose first answer holds fewer than k other images (its mirror image and copies
        crowd the list, or the probed cells ran dry) is asked again for up to 8x as many; a row
        still short is completed by an exact search of its own."""
        rows = np.asarray(rows, dtype=np.int64)
        k = min(k, self.n - 1)
        if k <= 0 or len(rows) == 0:
            return np.zeros((len(rows), 0), np.int64)
        total = self.n * self.copies
        out = np.empty((len(rows), k), np.int64)
        todo, want = np.arange(len(rows)), k * self.copies + 2  # self (twice with mirroring), mirror images
        for attempt in range(4):
            _, idx = self.index.search(self.keys[rows[todo]], min(want, total))
            short = []
            for r, hit in zip(todo.tolist(), idx):
                q = int(rows[r])
                seen = [j for j in dict.fromkeys((hit[hit >= 0] % self.n).tolist()) if j != q]
                if len(seen) >= k:
                    out[r] = seen[:k]
                elif attempt == 3 or want >= total:
                    out[r] = self._exact(q, k)
                else:
                    short.append(r)
            if not short:
                break
            todo, want = np.array(short), want * 2
        return out

    def _exact(self, q: int, k: int) -> np.ndarray:
        """The k nearest other images of row q by a plain scan (mirror counted), for the rare short row."""
        sims = self.keys @ self.keys[q]
        if self.copies == 2:
            sims = np.maximum(sims, self._mirrored @ self.keys[q])
        sims[q] = -np.inf
        return np.argsort(-sims, kind="stable")[:k]
