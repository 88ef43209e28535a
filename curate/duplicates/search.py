"""Duplicate pairs: nearest keys as candidates, then the aligned distance decides.

1. **Candidates**: each query image's ``k`` nearest keys (and, with ``mirror``, the
   nearest keys of its mirror image) -- by an exact chunked search (``index="exact"``:
   one BLAS product per chunk, memory ``memory_mb``), a FAISS index (``"faiss"`` exact,
   ``"faiss_ivf"`` approximate: :mod:`curate.duplicates.key_index`), or a scikit-learn
   nearest-neighbour index (``"ball_tree"``, ``"kd_tree"``, ``"brute"``). ``"auto"``: exact
   up to 100,000 keys, FAISS's inverted file beyond (when faiss is installed).
   With mirroring the exact search is no dearer than without: keys are split into a
   mirror-symmetric part S and an antisymmetric part A (an orthonormal change of basis),
   and ``max(<q, x>, <mirror q, x>) = <q_S, x_S> + |<q_A, x_A>|``.
2. **Verification**: the aligned distance (:mod:`curate.duplicates.align`) of every candidate
   pair; pairs within ``threshold`` are duplicates.
3. **Expansion**: a query all of whose ``k`` candidates were duplicates is searched again
   with twice the ``k`` (so a photo with 50 copies gets all 50), until a candidate is not a
   duplicate or every image was a candidate.
4. Optionally (``relative``) the threshold is first capped by the collection's
   *background* distance, so that low-detail images are not grouped with look-alikes.
5. Optionally (``ratio``) a ratio test: a pair farther than the threshold but within
   ``reach`` times it is a duplicate when it stands out from both images' neighbours
   (distance <= ``ratio`` x the mean of their ``ratio_rank``-th nearest other candidate
   distances). Images whose own candidates were not searched (``queries`` a subset) are
   searched first, so a pair's background does not depend on which images were queried.
   Not where the cap of step 4 binds (a low-detail collection).
6. Optionally (``embeddings`` of :mod:`curate.duplicates.copy_embedding`) a learned copy
   embedding judges the band of step 5 too: a band pair is a duplicate when the ratio test
   keeps it and its cosine is >= ``cosine_floor``, or when its cosine is >= ``cosine_high``
   (a copy whose neighbours crowd it, which the ratio test alone refuses). Given as a
   function, it is asked only for the band's images, and only when the band exists.
7. Optionally (``verifier`` of :mod:`curate.duplicates.copy_verifier`, with ``embeddings``) a
   learned pair verifier reaches further: a band pair that steps 5-6 refuse is a duplicate
   when its logit is >= ``verifier_logit``, a pair beyond the band up to ``verifier_reach``
   times the threshold when its logit is >= ``verifier_beyond``; either only where the
   cosine is >= ``cosine_floor``. It is asked once, and only for the pairs its answer can
   keep (refused so far, at or above the floor): eight passes of a small network per pair
   (at 60,000 CIFAR-10 images, 8,634 pairs instead of 57,238).

Cost (n images, q queries, d key dims): the exact search is ``O(q n d)`` time and
``O(memory_mb)`` memory; a tree index is built in ``O(n log n)`` and answers each
query in sub-linear time when the keys have a low intrinsic dimension. Verification is
``O(pairs)`` after ``O(images in pairs)`` thumbnails.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from curate.duplicates.align import Aligner
from curate.duplicates.descriptor import Descriptor

from curate.duplicates.choices import (COSINE_FLOOR, COSINE_HIGH, INDEXES, RATIO_RANK, RATIO_REACH,
                                       VERIFIER_BEYOND_LOGIT, VERIFIER_LOGIT, VERIFIER_REACH)
from curate.duplicates.verify import PairVerifier


@dataclass
class PairResult:
    """``pairs`` (P, 2) int64 with i < j, ``distances`` (P,) float64 aligned distances
    (exact below ``threshold + refine``, upper bounds above), ``candidates`` how many
    candidate pairs were verified, ``rounds`` how many search rounds ran."""

    pairs: np.ndarray
    distances: np.ndarray
    candidates: int = 0
    rounds: int = 0
    timings: dict = field(default_factory=dict)
    nearest: np.ndarray | None = None  # (q,) each query's smallest candidate distance
    threshold: float | None = None     # the threshold applied (after the background cap)
    background: float | None = None    # the background distance, when measured
    by_ratio: int = 0                  # pairs beyond the threshold accepted (steps 5 and 6)
    by_embedding: int = 0              # of those, pairs the ratio test alone refused (step 6)
    by_verifier: int = 0               # pairs beyond the threshold that only the verifier accepted (step 7)


def mirror_basis(perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal split of key space under the mirror permutation ``perm``:
    matrices S (d, ds) and A (d, da) with ``keys @ S`` mirror-invariant and
    ``keys @ A`` sign-flipped by mirroring; ds + da = d."""
    d = len(perm)
    fixed = np.nonzero(perm == np.arange(d))[0]
    pairs = np.array([(i, perm[i]) for i in range(d) if perm[i] > i]).reshape(-1, 2)
    S = np.zeros((d, len(fixed) + len(pairs)))
    A = np.zeros((d, len(pairs)))
    S[fixed, np.arange(len(fixed))] = 1.0
    r = 1.0 / np.sqrt(2.0)
    cols = len(fixed) + np.arange(len(pairs))
    S[pairs[:, 0], cols] = r
    S[pairs[:, 1], cols] = r
    A[pairs[:, 0], np.arange(len(pairs))] = r
    A[pairs[:, 1], np.arange(len(pairs))] = -r
    return S, A


class KeySearch:
    """The k nearest keys of query rows, optionally counting mirrored keys as near."""

    def __init__(self, keys: np.ndarray, perm: np.ndarray | None, index: str = "exact",
                 memory_mb: float = 256.0):
        if index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
        self.keys = np.ascontiguousarray(keys, dtype=np.float32)
        self.n = len(self.keys)
        if index == "auto":  # exact while it is affordable, FAISS's inverted file beyond
            from curate.duplicates.key_index import AUTO_EXACT_MAX, faiss_available

            index = "faiss_ivf" if self.n > AUTO_EXACT_MAX and faiss_available() else "exact"
        self.perm, self.index, self.memory_mb = perm, index, memory_mb
        if index in ("faiss", "faiss_ivf"):
            from curate.duplicates.key_index import FaissKeys

            self._faiss = FaissKeys(self.keys, perm, approximate=index == "faiss_ivf")
        elif index == "exact":
            if perm is not None:
                S, A = mirror_basis(perm)
                self._s = torch.from_numpy((self.keys @ S).astype(np.float32))
                self._a = torch.from_numpy((self.keys @ A).astype(np.float32))
            else:
                self._s, self._a = torch.from_numpy(self.keys), None
        else:
            from sklearn.neighbors import NearestNeighbors

            data = self.keys if perm is None else np.concatenate([self.keys, self.keys[:, perm]])
            self._nn = NearestNeighbors(algorithm=index).fit(data)

    def neighbours(self, rows: np.ndarray, k: int) -> np.ndarray:
        """rows (q,) indices into the keys -> (q, min(k, n-1)) nearest other rows, nearest first."""
        k = min(k, self.n - 1)
        if k <= 0 or len(rows) == 0:
            return np.zeros((len(rows), 0), np.int64)
        if self.index == "exact":
            return self._exact(rows, k)
        if self.index in ("faiss", "faiss_ivf"):
            return self._faiss.neighbours(rows, k)
        extra = 2 if self.perm is not None else 1
        _, idx = self._nn.kneighbors(self.keys[rows], n_neighbors=min(len(self._nn._fit_X), k * extra + 2))
        out = np.empty((len(rows), k), np.int64)
        for r, (q, row) in enumerate(zip(rows, idx % self.n)):
            seen = [j for j in dict.fromkeys(row.tolist()) if j != q]  # drop self and repeats
            if len(seen) < k:  # mirrored copies crowded the list: ask for everything
                _, full = self._nn.kneighbors(self.keys[q:q + 1], n_neighbors=len(self._nn._fit_X))
                seen = [j for j in dict.fromkeys((full[0] % self.n).tolist()) if j != q]
            out[r] = seen[:k]
        return out

    def _exact(self, rows: np.ndarray, k: int) -> np.ndarray:
        chunk = max(1, int(self.memory_mb * 2**20 / (4 * 3 * self.n)))
        out = []
        for s in range(0, len(rows), chunk):
            r = torch.from_numpy(np.asarray(rows[s:s + chunk], dtype=np.int64))
            sims = self._s[r] @ self._s.T
            if self._a is not None:
                sims += (self._a[r] @ self._a.T).abs_()
            sims[torch.arange(len(r)), r] = -np.inf  # not its own neighbour
            out.append(torch.topk(sims, k, dim=1).indices.numpy())
        return np.concatenate(out).astype(np.int64)


def find_pairs(keys: np.ndarray, canvases: np.ndarray, queries: np.ndarray, threshold: float, *,
               descriptor: Descriptor, mirror: bool = True, k: int = 10, index: str = "exact",
               refine: float = 0.15, relative: float | None = None, reference=None, rank: int = 3,
               ratio: float | None = None, reach: float = RATIO_REACH, ratio_rank: int = RATIO_RANK,
               embeddings=None, cosine_floor: float = COSINE_FLOOR,
               cosine_high: float = COSINE_HIGH, verifier=None, verifier_logit: float = VERIFIER_LOGIT,
               verifier_beyond: float = VERIFIER_BEYOND_LOGIT, verifier_reach: float = VERIFIER_REACH,
               memory_mb: float = 256.0, progress=None) -> PairResult:
    """Duplicate pairs among ``n`` images of which ``queries`` (q,) are searched.

    keys (n, d) and canvases (n, C, h, h) from :meth:`Descriptor.describe`. Returns every
    verified pair (i, j) with at least one member a query and distance <= the threshold.

    With ``relative`` and ``reference`` (indices of a sample of the n images), the
    threshold is capped at ``relative`` times the *background*: the median over the
    reference images of their ``rank``-th smallest candidate distance (the rank-th, not
    the nearest, so that clusters of up to ``rank`` copies do not lower it). Duplicates
    must stand out from how close unrelated images of this collection come anyway: on
    CIFAR-10 photos the background is about 0.55 (the cap does not bind); on 8x8 digits,
    where different writers' digits are as close as copies of a photo, about 0.19.

    With ``ratio``, a pair with threshold < distance <= ``reach`` x threshold is also a
    duplicate when distance <= ``ratio`` x its local background (step 5 of the module
    docstring; :func:`local_background`) -- unless the background cap binds: in a
    collection whose unrelated images come that close (8x8 digits) nothing beyond the
    capped threshold counts.

    With ``embeddings`` and ``ratio``, the band's pairs are judged by their cosine too (step 6
    of the module docstring). ``embeddings``: (e, em), both (n, dim) from
    :meth:`curate.duplicates.copy_embedding.CopyEmbedding.embed`, or a function ``rows (m,) ->
    (e, em)`` of those images alone, called once with the band's images (so that a collection
    pays only for what the band needs, and nothing where the cap binds).

    With ``verifier`` (and ``embeddings`` and ``ratio``), step 7: ``verifier`` a function
    ``pairs (m, 2) -> (m,) logits`` (:meth:`curate.duplicates.copy_verifier.CopyVerifier.logits`
    of the pairs' images), called once with the pairs it can keep: the band's that steps 5-6
    refuse and those up to ``verifier_reach`` x threshold, either at cosine >= ``cosine_floor``.

    ``progress(n)`` is called as verification advances (in images).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if ratio is not None and not (ratio > 0 and reach >= 1 and ratio_rank >= 1):
        raise ValueError(f"need ratio > 0, reach >= 1, ratio_rank >= 1; got {ratio}, {reach}, {ratio_rank}")
    if embeddings is not None and not callable(embeddings) and not (
            len(embeddings) == 2 and all(len(x) == len(keys) for x in embeddings)):
        raise ValueError(f"embeddings must be a function or (e, em), each with one row per key ({len(keys)})")
    if verifier is not None and (not callable(verifier) or embeddings is None or verifier_reach < reach):
        raise ValueError("verifier must be a function pairs (m, 2) -> (m,) logits, given with embeddings (its "
                         f"decisions keep the cosine floor), and verifier_reach >= reach ({reach}); got "
                         f"{type(verifier).__name__}, embeddings {'given' if embeddings is not None else 'None'}, "
                         f"verifier_reach {verifier_reach}")
    run = _Run(keys, canvases, descriptor, mirror, index, -1.0, memory_mb)
    background, requested = None, threshold
    if relative is not None and reference is not None and len(reference):
        # coarse distances suffice for the background (they only overestimate it)
        ref = np.unique(np.asarray(reference, dtype=np.int64))
        run.search(ref, max(k, rank), stop_at=None)
        kth = [np.sort(run.distances_of(q))[rank - 1] for q in ref.tolist()
               if len(run.distances_of(q)) >= rank]
        if kth:
            background = float(np.median(kth))
            threshold = min(threshold, relative * background)
        run.forget()
    if threshold < requested:  # the cap binds: unrelated images come close (low detail),
        ratio = None              # so nothing beyond the capped threshold is a duplicate
    upper = threshold * reach if ratio is not None else threshold  # the band's end
    verifying = verifier is not None and ratio is not None
    far = threshold * verifier_reach if verifying else upper  # farthest a duplicate can be
    run.verifier.refine_below = far + refine
    queries = np.unique(np.asarray(queries, dtype=np.int64))
    run.progress = progress
    run.search(queries, k, stop_at=threshold)
    if progress and run.shown < run.n:
        progress(run.n - run.shown)  # the images no candidate pair touched

    def asked_pairs(lo: float, hi: float) -> list[tuple[int, int]]:
        """Verified pairs with lo < distance <= hi that touch a query."""
        return [p for p, d in run.done.items() if lo < d <= hi and (p[0] in run.asked or p[1] in run.asked)]

    if ratio is not None:  # the band's images need their own k nearest keys for their backgrounds
        unsearched = sorted({i for p in asked_pairs(threshold, upper) for i in p} - run.asked)
        if unsearched:
            run.search(np.array(unsearched, dtype=np.int64), k, stop_at=None)
    keep = set(asked_pairs(-np.inf, threshold))
    by_ratio = by_embedding = by_verifier = 0
    if ratio is not None:
        band = asked_pairs(threshold, upper)
        beyond = asked_pairs(upper, far) if verifying else []
        if embeddings is not None:
            cos = _band_cosines(embeddings, band + beyond)
        refused = []  # band pairs steps 5-6 refuse
        for i, (a, b) in enumerate(band):
            bg = [x for x in (local_background(run.distances_of(a, without=b), ratio_rank),
                              local_background(run.distances_of(b, without=a), ratio_rank)) if x is not None]
            yes = bool(bg) and run.done[(a, b)] <= ratio * float(np.mean(bg))  # step 5
            if embeddings is not None:  # step 6
                by_embedding += int(not yes and cos[i] >= cosine_high)
                yes = bool((yes and cos[i] >= cosine_floor) or cos[i] >= cosine_high)
            if yes:
                keep.add((a, b))
                by_ratio += 1
            else:
                refused.append(i)
        if verifying:  # step 7: asked only for pairs its answer can keep (below the floor it cannot)
            judged = band + beyond  # the indices of cos
            ask = [i for i in refused + list(range(len(band), len(judged))) if cos[i] >= cosine_floor]
            for i, logit in zip(ask, _pair_logits(verifier, [judged[i] for i in ask])):
                if logit >= (verifier_logit if i < len(band) else verifier_beyond):
                    keep.add(judged[i])
                    by_verifier += 1
    keep = sorted(keep)
    pairs = np.array(keep, dtype=np.int64).reshape(-1, 2)
    nearest = np.array([run.distances_of(q).min(initial=np.inf) for q in queries.tolist()])
    return PairResult(pairs, np.array([run.done[p] for p in keep], dtype=np.float64), len(run.done),
                      run.rounds, run.timings, nearest, threshold, background, by_ratio, by_embedding, by_verifier)


def _pair_logits(verifier, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(len(pairs),) the verifier's logits of the pairs (one call; none without pairs)."""
    if not pairs:
        return np.zeros(0)
    out = np.asarray(verifier(np.array(pairs, dtype=np.int64)), dtype=np.float64).reshape(-1)
    if len(out) != len(pairs):
        raise ValueError(f"the verifier returned {len(out)} logits for {len(pairs)} pairs")
    return out


def _band_cosines(embeddings, band: list[tuple[int, int]]) -> np.ndarray:
    """(len(band),) cosines of the band's pairs; a function is asked for the band's images only."""
    from curate.duplicates.copy_embedding import cosine

    ab = np.array(band, dtype=np.int64).reshape(-1, 2)
    if not len(ab):
        return np.zeros(0)
    if not callable(embeddings):
        return cosine(*embeddings, ab[:, 0], ab[:, 1])
    need = np.unique(ab)
    e, em = embeddings(need)
    if not (len(e) == len(em) == len(need)):
        raise ValueError(f"the embeddings function returned {len(e)} / {len(em)} rows for {len(need)} images")
    at = np.searchsorted(need, ab)
    return cosine(e, em, at[:, 0], at[:, 1])


def local_background(distances: np.ndarray, rank: int) -> float | None:
    """An image's local background: the ``rank``-th smallest of its candidate distances
    (the partner of the pair being judged left out), the largest when it has fewer; None
    without candidates. ``rank`` > 1 so that a few copies of the image do not lower it."""
    if len(distances) == 0:
        return None
    d = np.sort(distances)
    return float(d[min(rank, len(d)) - 1])


class _Run:
    """Candidate search and verification with one cache of verified pairs."""

    def __init__(self, keys, canvases, descriptor, mirror, index, refine_below, memory_mb):
        t0 = time.perf_counter()
        perm = descriptor.mirror_permutation(canvases.shape[1]) if mirror else None
        self.keys = KeySearch(keys, perm, index=index, memory_mb=memory_mb)
        self.timings = {"index_build_s": time.perf_counter() - t0, "search_s": 0.0, "verify_s": 0.0}
        self.verifier = PairVerifier(Aligner(descriptor.spec), canvases, mirror, refine_below)
        self.n = len(keys)
        self.done: dict[tuple[int, int], float] = {}
        self.partners: dict[int, list[int]] = {}
        self.asked: set[int] = set()  # the main pass's queries
        self.rounds, self.shown, self.progress = 0, 0, None

    def forget(self) -> None:
        """Drop verified pairs (the background pass's coarse distances)."""
        self.done.clear()
        self.partners.clear()

    def distances_of(self, i: int, without: int | None = None) -> np.ndarray:
        """Verified distances of image i to its candidate partners (but ``without``)."""
        return np.array([self.done[(min(i, j), max(i, j))] for j in self.partners.get(i, []) if j != without])

    def _advance(self, m: int) -> None:  # the first round's images; later rounds are few
        if self.progress and self.rounds == 1:
            self.shown += m
            self.progress(m)

    def search(self, queries: np.ndarray, k: int, stop_at: float | None) -> None:
        """Verify each query's k nearest keys; with ``stop_at``, a query all of whose
        candidates are within it looks again with twice the k."""
        if stop_at is not None:
            self.asked.update(queries.tolist())
        todo, kk = queries, k
        while len(todo):
            if stop_at is not None:
                self.rounds += 1
            t = time.perf_counter()
            nb = self.keys.neighbours(todo, kk)
            self.timings["search_s"] += time.perf_counter() - t
            cand = {(min(a, b), max(a, b)) for a, row in zip(todo.tolist(), nb.tolist()) for b in row}
            new = sorted(cand - self.done.keys())
            t = time.perf_counter()
            pairs = np.array(new, dtype=np.int64).reshape(-1, 2)
            for (a, b), d in zip(new, self.verifier.distances(pairs, self._advance)):
                self.done[(a, b)] = d
                self.partners.setdefault(a, []).append(b)
                self.partners.setdefault(b, []).append(a)
            self.timings["verify_s"] += time.perf_counter() - t
            if stop_at is None or kk >= self.n - 1:
                return
            todo = np.array([q for q, row in zip(todo.tolist(), nb.tolist())
                             if len(row) == min(kk, self.n - 1) and row and
                             all(self.done[(min(q, b), max(q, b))] <= stop_at for b in row)], dtype=np.int64)
            kk *= 2


def reference_sample(keys: np.ndarray, size: int = 512) -> np.ndarray:
    """Indices (sorted) of up to ``size`` images chosen by a hash of their keys (n, d): the
    same images whatever the order of the collection, its sample ids or its file paths,
    so the background -- and so the groups -- depend on the images alone."""
    import hashlib

    keys = np.ascontiguousarray(keys)
    h = [hashlib.sha1(k.tobytes()).hexdigest() for k in keys]
    return np.array(sorted(sorted(range(len(h)), key=lambda i: (h[i], i))[:size]), dtype=np.int64)
