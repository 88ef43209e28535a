"""Match generated images against a training set, in memory-bounded chunks.

For every generated image x̂ (m of them) the k nearest *unique* training images y
(L2 in pixel space, exact float64 distances), and from them the published criteria
(the same formulas as :mod:`curate.memorization`, which this module agrees with to the
last count):

* Carlini et al. 2023: l = d_1 / (alpha_c · mean of the n_c smallest d), copy when l < 1;
* Gu et al. 2023: d_1 / d_2 < 1/3;
* RMS: d_1 / sqrt(D) < rms_threshold (0.10 on the [-1, 1] scale).

Exact duplicates inside the training set are merged first (:func:`exact_groups`): the
search runs over one image per group, and a copy of a group counts for every member.

Working memory (bytes; D values per image, n_u unique training images, k neighbours;
r generated rows and c training rows per block, both chosen from ``memory_mb``):

    resident:   the unique training images in their own dtype  n_u · D · itemsize
                their squared norms (float64)                   8 · n_u
    per block:  the training chunk in float64                   8 · c · D   (none if the
                                                                 images are float64 already)
                the generated rows in float64                   8 · r · D
                the distance block and top-k's copy             2 · 8 · r · c
                the exact recomputation (one column at a time)  8 · r · D

with c <= memory_mb / 4 / (8 D) and r chosen so the per-block terms stay within
``memory_mb`` (:func:`block_sizes`). The issue's sizes: 100,000 generated x 50,000
training images at 32x32x3 (D = 3,072), training images float32 (586 MiB) and
``memory_mb = 1024``: c = 10,922 and r = 3,571, so the peak is about 586 + 1,024 MiB =
1.6 GiB < 2 GiB; the generated images never need to be in memory at once (the audit
matches them block by block as they are sampled), and per generated image the result is
a few numbers (100,000 x 40 B = 4 MB). Measured with ``curate bench sampler --match 2000
50000 --memory-mb 1024`` on a shared 2-core CPU, one thread: peak resident growth
1,488 MiB, 84 s per 2,000 generated images (7.3 GFLOP/s float64); the work is
2 m n_u D = 3.1e13 flops for the full sizes, about 70 minutes on that one thread.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from curate import _progress
from curate.memorization import (CARLINI_ALPHA, CARLINI_N, CRITERIA, GU_THRESHOLD,  # noqa: F401 (one definition each; CRITERIA re-exported)
                                 RMS_THRESHOLD, carlini_ratio, gu_ratio)


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, ...) tensor, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def exact_groups(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact-duplicate groups of (n, ...) images, in O(n) extra memory (a hash per row).

    Returns ``(group, first)``: group (n,) long, each image's group id, numbered in order
    of first appearance; first (g,) long, the index of each group's first image. Same
    answer as :func:`curate.memorization.duplicate_groups` (which sorts all rows).
    """
    flat = _flat(images, "images")
    cpu = flat.detach().to("cpu").contiguous()
    seen: dict[bytes, list[int]] = {}  # hash -> group ids with that hash (collisions compared)
    first: list[int] = []
    group = torch.empty(flat.shape[0], dtype=torch.long)
    for i in range(cpu.shape[0]):
        row = cpu[i]
        h = hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest()
        for g in seen.get(h, ()):
            if torch.equal(cpu[first[g]], row):
                group[i] = g
                break
        else:
            seen.setdefault(h, []).append(len(first))
            group[i] = len(first)
            first.append(i)
    return group.to(flat.device), torch.tensor(first, dtype=torch.long, device=flat.device)


class TrainingSet:
    """The training images a matcher searches: one image per exact-duplicate group.

    images (n, C, H, W) (any real dtype; matched in float64). ``dedupe=False`` treats
    every image as its own group (as ``find_memorized(dedupe=False)``).
    """

    def __init__(self, images: torch.Tensor, *, dedupe: bool = True):
        flat = _flat(images, "training images")
        if not torch.isfinite(flat).all():
            raise ValueError("training images contain NaN or Inf")
        n = flat.shape[0]
        if dedupe:
            self.group, self.first = exact_groups(flat)
        else:
            self.group = torch.arange(n, device=flat.device)
            self.first = torch.arange(n, device=flat.device)
        # no copy when there are no duplicates
        self.unique = flat if self.first.numel() == n else flat[self.first]
        self.image_shape = tuple(images.shape[1:])
        self.sq_norms = self.unique.to(torch.float64).pow(2).sum(1) if self.unique.numel() <= 2**24 \
            else torch.cat([c.to(torch.float64).pow(2).sum(1) for c in self.unique.split(4096)])

    @property
    def n(self) -> int:
        """Training images, duplicates included."""
        return self.group.shape[0]

    @property
    def n_unique(self) -> int:
        return self.first.shape[0]

    @property
    def dim(self) -> int:
        return self.unique.shape[1]

    def to(self, device) -> "TrainingSet":
        for name in ("group", "first", "unique", "sq_norms"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def block_sizes(m: int, n: int, D: int, k: int, memory_mb: float) -> tuple[int, int]:
    """(r, c): generated rows and training rows per block within ``memory_mb`` (module doc)."""
    budget = memory_mb * 2**20
    c = max(1, min(n, int(budget / 4 // (8 * D))))
    r = max(1, min(m, int((budget - 8 * c * D) // (8 * (2 * D + 2 * c + 4 * k)))))
    return r, c


def nearest(samples: torch.Tensor, train: TrainingSet, k: int, *, memory_mb: float = 512.0,
            progress=False) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest unique training images of each sample, exactly.

    samples (m, C, H, W) on the training set's device. Returns ``(dist, index)``: dist
    (m, k) float64 ascending, index (m, k) long into ``train.unique``.

    Step 1, candidates: d^2 = |a|^2 - 2 a.b + |b|^2 per (r x c) block in float64, with a
    running top-k. Step 2, exact: the k winners' distances recomputed from explicit
    differences (no cancellation), then re-sorted.
    """
    a = _flat(samples, "samples")
    m, D, n = a.shape[0], a.shape[1], train.n_unique
    if D != train.dim:
        raise ValueError(f"samples have {D} values per image but the training images have {train.dim}")
    if a.device != train.unique.device:
        raise ValueError(f"samples are on {a.device} but the training images on {train.unique.device}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the unique training images), got {k}")
    if not torch.isfinite(a).all():
        raise ValueError("samples contain NaN or Inf")
    r, c = block_sizes(m, n, D, k, memory_mb)
    out_d = torch.empty((m, k), dtype=torch.float64, device=a.device)
    out_i = torch.empty((m, k), dtype=torch.long, device=a.device)
    rows = range(0, m, r)
    with _progress.progress(len(rows), "matching", progress and len(rows) > 1, transient=True) as advance:
        for r0 in rows:
            ar = a[r0:r0 + r].to(torch.float64)
            a_sq = ar.pow(2).sum(1, keepdim=True)
            best_d = best_i = None
            for t0 in range(0, n, c):
                bt = train.unique[t0:t0 + c].to(torch.float64)
                d2 = ar @ bt.T                                   # (r, c)
                d2.mul_(-2.0).add_(a_sq).add_(train.sq_norms[t0:t0 + c]).clamp_min_(0)
                kk = min(k, d2.shape[1])
                vd, vi = torch.topk(d2, kk, dim=1, largest=False, sorted=False)
                vi += t0
                if best_d is not None:
                    vd, vi = torch.cat([best_d, vd], 1), torch.cat([best_i, vi], 1)
                kk = min(k, vd.shape[1])
                best_d, pos = torch.topk(vd, kk, dim=1, largest=False, sorted=False)
                best_i = torch.gather(vi, 1, pos)
                del d2
            # Step 2: exact distances of the winners, one neighbour column at a time;
            # ties go to the lower index (the winners sorted by index, then a stable sort).
            best_i = best_i.sort(1).values
            exact = torch.empty_like(best_d)
            for j in range(best_i.shape[1]):
                exact[:, j] = (ar - train.unique[best_i[:, j]].to(torch.float64)).pow_(2).sum(1)
            exact = exact.sqrt_()
            exact, order = exact.sort(dim=1, stable=True)
            out_d[r0:r0 + r] = exact
            out_i[r0:r0 + r] = torch.gather(best_i, 1, order)
            advance()
    return out_d, out_i


@dataclass
class Matches:
    """What each of m generated samples copies.

    ``nearest`` (m,) long indexes the full training set (the first image of the nearest
    group), ``group`` (m,) that group's id; ``distance`` (m,) float64 = d_1; ``rms`` (m,) =
    d_1 / sqrt(D); ``carlini_ratio``, ``gu_ratio`` (m,) float64 (Gu NaN with a single
    unique training image); ``copies`` maps each of :data:`CRITERIA` to (m,) bool.
    """

    nearest: torch.Tensor
    group: torch.Tensor
    distance: torch.Tensor
    rms: torch.Tensor
    carlini_ratio: torch.Tensor
    gu_ratio: torch.Tensor
    copies: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.nearest.shape[0]


def match(samples: torch.Tensor, train: TrainingSet, *, alpha: float = CARLINI_ALPHA,
          n_nearest: int = CARLINI_N, gu_threshold: float = GU_THRESHOLD,
          rms_threshold: float = RMS_THRESHOLD, memory_mb: float = 512.0, progress=False) -> Matches:
    """Nearest training image and every criterion for samples (m, C, H, W) (module doc).

    A sample's result depends only on that sample and the training set, never on which
    other samples share its call (so any chunking of the samples gives the same answer).
    """
    if alpha <= 0 or n_nearest < 1 or not 0 < gu_threshold or rms_threshold <= 0:
        raise ValueError("need alpha > 0, n_nearest >= 1, gu_threshold > 0, rms_threshold > 0")
    k = min(max(n_nearest, 2), train.n_unique)
    dist, idx = nearest(samples, train, k, memory_mb=memory_mb, progress=progress)
    d1 = dist[:, 0]
    # Carlini: l = d_1 / (alpha · mean_{n_c nearest} d); an exact copy (d_1 = 0) has l = 0.
    c_ratio = carlini_ratio(dist, alpha=alpha, n_nearest=n_nearest).to(d1.dtype)
    # Gu: d_1 / d_2 (needs two unique training images).
    g_ratio = gu_ratio(dist).to(d1.dtype) if k >= 2 else torch.full_like(d1, math.nan)
    rms = d1 / math.sqrt(train.dim)
    group = idx[:, 0]
    return Matches(
        nearest=train.first[group], group=group, distance=d1, rms=rms, carlini_ratio=c_ratio,
        gu_ratio=g_ratio,
        copies={"carlini": c_ratio < 1.0, "gu": g_ratio < gu_threshold, "rms": rms < rms_threshold},
    )
