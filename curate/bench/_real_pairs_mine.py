"""Mining candidate near-duplicate pairs of a whole CIFAR-10 for a person to judge.

Every image of both splits (train first, then test: *global row* ``g`` is training image
``g`` for ``g < 50,000``, else test image ``g - 50,000``) is described once; candidates
come from two independent neighbour searches, so that the labelled pairs are not only
those the descriptor already ranks close:

1. the descriptor's keys, mirrored keys counting as near (``key_k`` nearest per image);
2. standardised 8x8 colour thumbnails (each channel to mean 0 / RMS 1), mirrored too
   (``thumb_k`` nearest per image): pairs that keep their colours and layout but whose
   gradients differ (blur, JPEG) show up here even when their keys are far apart.

Every candidate pair (test-test pairs dropped: the benchmark pairs test with train, or
train with train) gets its aligned distance (:mod:`curate.duplicates.align`), refined by
the local search wherever the coarse distance is below ``refine_below`` (so every
distance up to a generous threshold is exact). Deterministic: exact searches, ties broken
by row, rows in global order.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from curate.data.tensors import hwc_uint8_to_nchw

TRAIN = 50_000  # CIFAR-10 training images; global rows beyond are test images


def split_index(g: int) -> tuple[str, int]:
    """Global row -> (split, official index)."""
    return ("train", g) if g < TRAIN else ("test", g - TRAIN)


def global_row(split: str, index: int) -> int:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return int(index) + (TRAIN if split == "test" else 0)


def load_all(root: Path, cache: Path, progress=True) -> np.ndarray:
    """uint8 (60000, 32, 32, 3): all CIFAR-10 images in global row order (cached as .npy)."""
    from curate._progress import progress as bar
    from curate.bench._dedupe_measure import cifar_paths, read_images

    f = cache / "images.npy"
    if f.is_file():
        return np.load(f)
    paths = [p for _, p in cifar_paths(root, "train")] + [p for _, p in cifar_paths(root, "test")]
    if len(paths) != TRAIN + 10_000:
        raise ValueError(f"expected 60,000 CIFAR-10 images under {root}, found {len(paths)}")
    out = []
    with bar(len(paths), "decoding CIFAR-10", progress) as advance:
        for s in range(0, len(paths), 4096):
            out.append(read_images(paths[s:s + 4096]))
            advance(len(out[-1]))
    images = np.concatenate(out)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f, images)
    return images


def describe_all(images: np.ndarray, cache: Path, progress=True):
    """Keys (n, d) float32 and canvases (n, C, h, h) float32 of the default descriptor (cached)."""
    from curate._progress import progress as bar
    from curate.duplicates import Descriptor

    f = cache / "descriptor.npz"
    if f.is_file():
        z = np.load(f)
        return z["keys"], z["canvases"]
    d = Descriptor()
    keys, canvases = [], []
    with bar(len(images), "describing", progress) as advance:
        for s in range(0, len(images), 2048):
            x = hwc_uint8_to_nchw(images[s:s + 2048])
            k, c = d.describe(x)
            keys.append(k)
            canvases.append(c)
            advance(len(x))
    keys, canvases = np.concatenate(keys), np.concatenate(canvases)
    np.savez(f, keys=keys, canvases=canvases)
    return keys, canvases


def thumbnails(images: np.ndarray, side: int = 8) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, 3*side*side) float32 unit vectors: box-averaged thumbnails,
    each channel standardised (mean 0, RMS 1 with a floor), so brightness and contrast cancel."""
    n, h, w, c = images.shape
    x = images.astype(np.float32).reshape(n, side, h // side, side, w // side, c).mean((2, 4))
    x = x - x.mean((1, 2), keepdims=True)
    x = x / np.sqrt((x * x).mean((1, 2), keepdims=True) + 25.0)
    x = x.transpose(0, 3, 1, 2).reshape(n, -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def thumb_neighbours(thumbs: np.ndarray, side: int, k: int, chunk: int = 1024, progress=True) -> np.ndarray:
    """(n, k) nearest rows by thumbnail similarity, a mirrored thumbnail counting as near."""
    import torch

    from curate._progress import progress as bar

    n = len(thumbs)
    t = torch.from_numpy(thumbs)
    mir = torch.from_numpy(thumbs.reshape(n, 3, side, side)[..., ::-1].reshape(n, -1).copy())
    out = []
    with bar(n, "thumbnail neighbours", progress) as advance:
        for s in range(0, n, chunk):
            q = t[s:s + chunk]
            sims = torch.maximum(q @ t.T, mir[s:s + chunk] @ t.T)
            sims[torch.arange(len(q)), torch.arange(s, s + len(q))] = -np.inf
            out.append(torch.topk(sims, k, dim=1).indices.numpy())
            advance(len(q))
    return np.concatenate(out).astype(np.int64)


def candidate_pairs(key_nb: np.ndarray, thumb_nb: np.ndarray) -> dict:
    """{(i, j) with i < j: {"key_rank": r or -1, "thumb_rank": r or -1}}, the best rank
    either image gives the other; test-test pairs dropped."""
    out: dict = {}
    for name, nb in (("key_rank", key_nb), ("thumb_rank", thumb_nb)):
        for p, r in best_ranks(nb).items():
            if p[0] < TRAIN:  # test-test pairs dropped
                out.setdefault(p, {"key_rank": -1, "thumb_rank": -1})[name] = r
    return out


def best_ranks(nb: np.ndarray) -> dict:
    """{(i, j) with i < j: the best rank either image gives the other} of (n, k) neighbour
    rows (every pair, test-test too: what a search of all n images verifies)."""
    out: dict = {}
    for q, row in enumerate(nb.tolist()):
        for r, j in enumerate(row):
            p = (min(q, j), max(q, j))
            if r < out.get(p, r + 1):
                out[p] = r
    return out


#: the numbers of nearest keys ``key_recall`` measures
KEY_RECALL_K = (10, 20, 30, 60)


def key_recall(root: Path, out: Path, ks=KEY_RECALL_K, threshold: float = 0.2) -> dict:
    """Candidate recall of the key search without labels: of the mined pairs within
    ``threshold`` (found by the keys or by the independent thumbnail search, ``mine``'s
    candidates.csv), how many are *not* among each other's k nearest keys, for each k of
    ``ks``, and how many distinct pairs a search of all n images with k verifies."""
    from curate.duplicates import Descriptor
    from curate.duplicates.search import KeySearch

    images = load_all(root, out, progress=False)
    keys, _ = describe_all(images, out, progress=False)
    ks_ = KeySearch(keys, Descriptor().mirror_permutation(3))
    nb = np.concatenate([ks_.neighbours(np.arange(s, min(s + 4096, len(keys))), max(ks))
                         for s in range(0, len(keys), 4096)])
    rank = best_ranks(nb)
    within = [(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in read_candidates(out / "candidates.csv")
              if r["distance"] <= threshold]
    r = np.array([rank.get(p, max(ks)) for p in within])
    counts = np.bincount(np.fromiter(rank.values(), dtype=np.int64), minlength=max(ks))
    return {"threshold": threshold, "mined_within": len(within),
            "missed": {k: int((r >= k).sum()) for k in ks},
            "pairs_verified": {k: int(counts[:k].sum()) for k in ks}}


def read_candidates(candidates: Path) -> list[dict]:
    """The rows of ``mine``'s candidates.csv with global rows ``a``, ``b`` and a float distance."""
    rows = []
    with open(candidates, newline="") as f:
        for r in csv.DictReader(f):
            r["a"], r["b"] = global_row(r["split_a"], r["index_a"]), global_row(r["split_b"], r["index_b"])
            r["distance"] = float(r["distance"])
            rows.append(r)
    return rows


def aligned_distances(canvases: np.ndarray, pairs: np.ndarray, refine_below: float, progress=True) -> np.ndarray:
    """(P, 2) global rows -> (P,) aligned distances of the default descriptor, refined (so
    exact) wherever the coarse distance is <= ``refine_below``."""
    from curate._progress import progress as bar
    from curate.duplicates.align import Aligner
    from curate.duplicates.verify import PairVerifier

    v = PairVerifier(Aligner(), canvases, mirror=True, refine_below=refine_below)
    out = np.empty(len(pairs))
    step = 20_000
    with bar(len(pairs), "aligned distances (pairs)", progress) as advance:
        for s in range(0, len(pairs), step):
            out[s:s + step] = v.distances(pairs[s:s + step])
            v._base.clear()
            advance(len(pairs[s:s + step]))
    return out


FIELDS = ("split_a", "index_a", "split_b", "index_b", "kind", "distance", "key_rank", "thumb_rank")


def ordered(i: int, j: int) -> tuple[int, int]:
    """A pair as (a, b): a test image first (test-train), else the lower training index."""
    return (j, i) if j >= TRAIN > i else (min(i, j), max(i, j))


def mine(root: Path, out: Path, *, key_k: int = 10, thumb_k: int = 5, refine_below: float = 0.45,
         progress=True) -> Path:
    """Write ``out/candidates.csv`` (FIELDS) of every candidate pair; returns its path."""
    from curate.duplicates import Descriptor
    from curate.duplicates.search import KeySearch

    out.mkdir(parents=True, exist_ok=True)
    images = load_all(root, out, progress)
    keys, canvases = describe_all(images, out, progress)
    f_nb = out / f"neighbours_k{key_k}_t{thumb_k}.npz"
    if f_nb.is_file():
        z = np.load(f_nb)
        key_nb, thumb_nb = z["key"], z["thumb"]
    else:
        ks = KeySearch(keys, Descriptor().mirror_permutation(3))
        key_nb = np.concatenate([ks.neighbours(np.arange(s, min(s + 4096, len(keys))), key_k)
                                 for s in range(0, len(keys), 4096)])
        thumb_nb = thumb_neighbours(thumbnails(images), 8, thumb_k, progress=progress)
        np.savez(f_nb, key=key_nb, thumb=thumb_nb)
    cand = candidate_pairs(key_nb, thumb_nb)
    pairs = np.array(sorted(cand), dtype=np.int64)
    dist = aligned_distances(canvases, pairs, refine_below, progress)
    path = out / "candidates.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for (i, j), d in zip(pairs.tolist(), dist.tolist()):
            a, b = ordered(i, j)
            kind = "test-train" if a >= TRAIN else "train-train"
            e = cand[(i, j)]
            w.writerow([*split_index(a), *split_index(b), kind, f"{d:.5f}", e["key_rank"], e["thumb_rank"]])
    return path
