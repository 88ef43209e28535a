"""Memorization ground truth: which training images do generated samples copy?

Exact nearest-neighbour search (L2 in pixel space) between generated samples and a
training set, and the two published criteria on top of it:

* Carlini et al. 2023: l = |x̂ - nn_1| / (alpha_c · mean_{y in S} |x̂ - y|), S the n_c
  nearest training images of x̂ (nn_1 included), alpha_c = 0.5, n_c = 50; memorized
  when l < 1.
* Gu et al. 2023: |x̂ - nn_1| / |x̂ - nn_2| < 1/3.
* a plain distance: the root-mean-square pixel difference |x̂ - nn_1| / sqrt(D) below
  ``rms_threshold`` (0.10 on the [-1, 1] scale: 13/255 per pixel). Measured on real
  CIFAR-10 test images, which cannot be copies: Carlini's ratio fires on 1.6-3 % of them
  when the training set has <= 128 images (its mean over the 50 nearest is then most of
  the set), Gu's and this one on none.

Exact duplicates inside the training set would make both criteria blind (nn_1 and
nn_2 coincide), so by default the search runs over the *unique* training images and
each copy of a duplicated image receives the reproduction count of its group.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from curate import _progress

CARLINI_ALPHA = 0.5
CARLINI_N = 50
GU_THRESHOLD = 1.0 / 3.0
RMS_THRESHOLD = 0.10
#: The memorization criteria, in the order reports show them.
CRITERIA = ("carlini", "gu", "rms")


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (n, ...) with at least 2 dims, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return x.reshape(x.shape[0], -1)


def nearest_neighbors(
    samples: torch.Tensor,
    train: torch.Tensor,
    k: int = 1,
    *,
    memory_mb: float = 256.0,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest training images (L2 in pixel space) of every sample, exactly.

    samples: (m, C, H, W) or (m, D); train: (n, C, H, W) or (n, D), same D and device.
    Returns ``(dist, index)``: dist (m, k) float64 sorted ascending, index (m, k) long
    (into ``train``), both on the inputs' device.

    Candidates come from the expansion |a|^2 - 2 a.b + |b|^2 over (sample chunk x
    train chunk) blocks kept within ``memory_mb``, with a running top-k; the k winners'
    distances are then recomputed from explicit differences so they are exact. Runs on
    whatever device the inputs are on.
    """
    a, b = _flat(samples, "samples"), _flat(train, "train")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples have {a.shape[1]} values per image but train has {b.shape[1]}")
    if a.device != b.device:
        raise ValueError(f"samples are on {a.device} but train is on {b.device}")
    m, n, D = a.shape[0], b.shape[0], a.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the training set size), got {k}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("samples or train contain NaN or Inf")
    item = torch.empty((), dtype=dtype).element_size()
    budget = max(1, int(memory_mb * 2**20 / item))
    # A train chunk holds at most half the budget; the (rows x chunk) block the rest.
    tchunk = max(1, min(n, budget // 2 // D))
    rchunk = max(1, min(m, budget // 2 // (tchunk + k + D)))
    out_d = torch.empty((m, k), dtype=torch.float64, device=a.device)
    out_i = torch.empty((m, k), dtype=torch.long, device=a.device)
    rows = range(0, m, rchunk)
    with _progress.progress(len(rows), "nearest neighbours", progress and len(rows) > 1,
                            transient=True) as advance:
        for r0 in rows:
            ar = a[r0:r0 + rchunk].to(dtype)
            a_sq = (ar * ar).sum(1, keepdim=True)
            best_d = torch.full((ar.shape[0], 0), math.inf, dtype=dtype, device=a.device)
            best_i = torch.empty((ar.shape[0], 0), dtype=torch.long, device=a.device)
            for t0 in range(0, n, tchunk):
                bt = b[t0:t0 + tchunk].to(dtype)
                d2 = (a_sq - 2.0 * ar @ bt.T + (bt * bt).sum(1)).clamp_min_(0)
                idx = torch.arange(t0, t0 + bt.shape[0], device=a.device).expand(ar.shape[0], -1)
                cat_d = torch.cat([best_d, d2], 1)
                cat_i = torch.cat([best_i, idx], 1)
                kk = min(k, cat_d.shape[1])
                best_d, pos = torch.topk(cat_d, kk, dim=1, largest=False, sorted=True)
                best_i = torch.gather(cat_i, 1, pos)
            # Exact distances of the winners from explicit differences (no cancellation).
            exact = torch.stack(
                [(ar - b[best_i[:, j]].to(dtype)).to(torch.float64).pow(2).sum(1) for j in range(best_i.shape[1])], 1
            ).sqrt()
            exact, order = exact.sort(1)
            out_d[r0:r0 + rchunk] = exact
            out_i[r0:r0 + rchunk] = torch.gather(best_i, 1, order)
            advance()
    return out_d, out_i


def _criterion(name: str) -> str:
    if name not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {name!r}")
    return name


def _beside(path, suffix: str) -> Path:
    """``PATH`` + suffix: a name like ``mem_s1.5`` keeps its dot (``with_suffix`` would not)."""
    path = Path(path)
    return path.with_name(path.name + suffix)


def carlini_ratio(dist: torch.Tensor, *, alpha: float = CARLINI_ALPHA, n_nearest: int = CARLINI_N) -> torch.Tensor:
    """Carlini's l = d_1 / (alpha · mean of the n_nearest smallest distances), (m,).

    dist: (m, k) ascending nearest-neighbour distances. When fewer than ``n_nearest``
    columns exist (a training set smaller than n_c) the mean runs over all of them.
    A sample at distance 0 from its neighbour gets l = 0 (an exact copy).
    """
    if dist.dim() != 2 or dist.shape[1] < 1:
        raise ValueError(f"dist must be (m, k) with k >= 1, got {tuple(dist.shape)}")
    if alpha <= 0 or n_nearest < 1:
        raise ValueError("alpha must be > 0 and n_nearest >= 1")
    d = dist.to(torch.float64)
    mean = d[:, :n_nearest].mean(1)
    ratio = d[:, 0] / (alpha * mean)
    return torch.where(d[:, 0] == 0, torch.zeros_like(ratio), ratio)


def gu_ratio(dist: torch.Tensor) -> torch.Tensor:
    """Gu's ratio d_1 / d_2, (m,); 0 for an exact copy (d_1 = 0). Needs k >= 2."""
    if dist.dim() != 2 or dist.shape[1] < 2:
        raise ValueError(
            f"the Gu criterion needs the two nearest training images: dist must be (m, k>=2), got {tuple(dist.shape)}"
        )
    d = dist.to(torch.float64)
    ratio = d[:, 0] / d[:, 1]
    return torch.where(d[:, 0] == 0, torch.zeros_like(ratio), ratio)


@dataclass
class Memorization:
    """Nearest neighbours of generated samples and who they copy.

    Shapes: m samples, n training images (the full set, duplicates included), k kept
    neighbours. ``nn_index`` points into the full training set (the first copy of a
    duplicated image). ``counts_*`` (n,) count the memorized samples whose nearest
    neighbour is that image (every copy of a duplicated image carries its group's
    count); ``group`` (n,) gives each training image's duplicate-group id.
    """

    nn_dist: torch.Tensor        # (m, k) float64
    nn_index: torch.Tensor       # (m, k) long
    carlini_ratio: torch.Tensor  # (m,) float64
    gu_ratio: torch.Tensor       # (m,) float64, NaN when n_unique < 2
    carlini: torch.Tensor        # (m,) bool
    gu: torch.Tensor             # (m,) bool
    counts_carlini: torch.Tensor  # (n,) long
    counts_gu: torch.Tensor      # (n,) long
    group: torch.Tensor          # (n,) long
    rms: torch.Tensor            # (m,) bool: nn_1 RMS distance < rms_threshold
    counts_rms: torch.Tensor     # (n,) long
    settings: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.nn_dist.shape[0]

    @property
    def n_train(self) -> int:
        return self.group.shape[0]

    def counts(self, criterion: str = "carlini") -> torch.Tensor:
        """Per-training-image reproduction counts (n,) under one of :data:`CRITERIA`."""
        return getattr(self, "counts_" + _criterion(criterion))

    def counts_in(self, samples: torch.Tensor, criterion: str = "carlini") -> torch.Tensor:
        """:meth:`counts` (n,) over the generated samples where ``samples`` (m,) bool is
        True: a subset's own counts (the two halves of a split-half noise ceiling)."""
        mem = self.memorized(criterion) & torch.as_tensor(samples, dtype=torch.bool, device=self.carlini.device)
        g = self.group.to(self.nn_index.device)[self.nn_index[:, 0]]
        per_group = torch.bincount(g[mem], minlength=int(self.group.max()) + 1)
        return per_group.to(self.group.device)[self.group]

    def memorized(self, criterion: str = "carlini") -> torch.Tensor:
        """(m,) bool: the samples that are copies under one of :data:`CRITERIA`."""
        return getattr(self, _criterion(criterion))

    def memorized_images(self, criterion: str = "carlini", min_count: int = 1) -> torch.Tensor:
        """Indices of training images reproduced at least ``min_count`` times."""
        return torch.nonzero(self.counts(criterion) >= min_count).flatten()

    def summary(self) -> dict:
        out = {"n_samples": self.n_samples, "n_train": self.n_train, "n_unique_train": int(self.group.max()) + 1}
        for c in CRITERIA:
            out[f"memorized_samples_{c}"] = int(self.memorized(c).sum())
            # distinct images: a duplicated image counts once however many copies it has
            out[f"memorized_images_{c}"] = int(torch.unique(self.group[self.counts(c) > 0]).numel())
        out["settings"] = dict(self.settings)
        return out

    def save(self, path: str | Path) -> None:
        """Write ``PATH.safetensors`` (tensors) and ``PATH.json`` (summary)."""
        from safetensors.torch import save_file

        tensors = {
            "nn_dist": self.nn_dist, "nn_index": self.nn_index,
            "carlini_ratio": self.carlini_ratio, "gu_ratio": self.gu_ratio,
            "carlini": self.carlini.to(torch.uint8), "gu": self.gu.to(torch.uint8),
            "rms": self.rms.to(torch.uint8), "counts_rms": self.counts_rms,
            "counts_carlini": self.counts_carlini, "counts_gu": self.counts_gu, "group": self.group,
        }
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(_beside(path, ".safetensors")))
        _beside(path, ".json").write_text(json.dumps(self.summary(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Memorization":
        from safetensors.torch import load_file

        t = load_file(str(_beside(path, ".safetensors")))
        settings = json.loads(_beside(path, ".json").read_text()).get("settings", {})
        if "rms" not in t:
            raise ValueError(f"{path}: saved before the rms criterion existed; rerun the memorization stage")
        return cls(
            nn_dist=t["nn_dist"], nn_index=t["nn_index"], carlini_ratio=t["carlini_ratio"],
            gu_ratio=t["gu_ratio"], carlini=t["carlini"].bool(), gu=t["gu"].bool(),
            counts_carlini=t["counts_carlini"], counts_gu=t["counts_gu"], group=t["group"],
            settings=settings, rms=t["rms"].bool(), counts_rms=t["counts_rms"],
        )


def duplicate_groups(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact-duplicate groups of a training set (n, ...).

    Returns ``(group, first)``: group (n,) long, the group id of every image (ids
    numbered in order of first appearance), and first (g,) long, the index of each
    group's first image.
    """
    flat = _flat(train, "train")
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)
    n = flat.shape[0]
    # Renumber groups by first appearance so ids are stable and readable.
    first_of = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=flat.device)
    first_of.scatter_reduce_(0, inverse, torch.arange(n, device=flat.device), reduce="amin")
    order = torch.argsort(first_of)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=flat.device)
    return rank[inverse], first_of[order]


def find_memorized(
    samples: torch.Tensor,
    train: torch.Tensor,
    *,
    alpha: float = CARLINI_ALPHA,
    n_nearest: int = CARLINI_N,
    gu_threshold: float = GU_THRESHOLD,
    rms_threshold: float = RMS_THRESHOLD,
    dedupe: bool = True,
    memory_mb: float = 256.0,
    progress: bool = False,
) -> Memorization:
    """Nearest neighbours of ``samples`` (m, C, H, W) in ``train`` (n, C, H, W) and every criterion.

    With ``dedupe`` the search runs over the unique training images (see module doc).
    n < n_nearest is allowed: Carlini's mean then runs over all (unique) images.
    """
    group, first = duplicate_groups(train) if dedupe else (
        torch.arange(train.shape[0], device=train.device), torch.arange(train.shape[0], device=train.device))
    uniq = train[first]
    k = min(max(n_nearest, 2), uniq.shape[0])
    dist, idx_u = nearest_neighbors(samples, uniq, k, memory_mb=memory_mb, progress=progress)
    nn_index = first.to(idx_u.device)[idx_u]
    c_ratio = carlini_ratio(dist, alpha=alpha, n_nearest=n_nearest)
    if k >= 2:
        g_ratio = gu_ratio(dist)
    else:  # a single unique training image: no second neighbour to compare with
        g_ratio = torch.full_like(c_ratio, math.nan)
    c_mem = c_ratio < 1.0
    g_mem = g_ratio < gu_threshold  # NaN compares False
    r_mem = dist[:, 0] / math.sqrt(train[0].numel()) < rms_threshold
    n_groups = first.shape[0]

    def counts(mask):
        per_group = torch.bincount(idx_u[:, 0][mask], minlength=n_groups)
        return per_group.to(group.device)[group]

    return Memorization(
        nn_dist=dist, nn_index=nn_index, carlini_ratio=c_ratio, gu_ratio=g_ratio,
        carlini=c_mem, gu=g_mem, counts_carlini=counts(c_mem), counts_gu=counts(g_mem),
        group=group, rms=r_mem, counts_rms=counts(r_mem),
        settings={"alpha": alpha, "n_nearest": n_nearest, "gu_threshold": gu_threshold,
                  "rms_threshold": rms_threshold, "dedupe": dedupe, "k": k},
    )
