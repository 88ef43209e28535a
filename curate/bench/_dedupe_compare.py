"""Which distance finds edited copies: the candidates the descriptor was chosen from,
compared without a threshold (``curate bench dedupe --compare``).

For each distance, over the benchmark's originals and planted copies:

* ``nearest``: share of copies whose nearest original is their source;
* ``recall_at_1pct``: share of copies within ``t`` of their source, where ``t`` is the
  1st percentile of the originals' distances to their nearest other original (a
  threshold at which about 1 % of the originals would get a wrong group);
* ``median_copy`` and ``t`` themselves.

Distances: ``pixel`` (RMS in [-1, 1], the Carlini distance), ``thumbnail`` (8x8 area
average, mean removed per channel, unit length; mirrored thumbnails count), ``gist``
(the descriptor's keys, :mod:`curate.duplicates.descriptor`; mirror counted) and
``aligned`` (the aligned distance of :mod:`curate.duplicates.align` over each image's
``k`` nearest keys, as :func:`curate.duplicates.find_pairs` searches; a source missing
from a copy's candidates counts as not found).
"""
from __future__ import annotations

import numpy as np
import torch

from curate.data.tensors import hwc_uint8_to_nchw
from curate.duplicates.search import KeySearch
from curate.duplicates.verify import PairVerifier


def _nearest(q: np.ndarray, x: np.ndarray, exclude_self: bool, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance and index of each row of q's nearest row of x (x itself:
    ``exclude_self`` skips the same row)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    xn = (xt * xt).sum(1)
    dist, idx = [], []
    for s in range(0, len(q), chunk):
        qt = torch.from_numpy(np.ascontiguousarray(q[s:s + chunk], dtype=np.float32))
        d2 = (qt * qt).sum(1, keepdim=True) + xn - 2 * qt @ xt.T
        if exclude_self:
            d2[torch.arange(len(qt)), torch.arange(s, s + len(qt))] = np.inf
        v, i = d2.min(1)
        dist.append(v.clamp_min(0).sqrt().numpy())
        idx.append(i.numpy())
    return np.concatenate(dist).astype(np.float64), np.concatenate(idx)


def _summary(copy_to_source: np.ndarray, nearest_is_source: np.ndarray, background: np.ndarray) -> dict:
    t = float(np.quantile(background, 0.01))
    return {"nearest": float(nearest_is_source.mean()), "recall_at_1pct": float((copy_to_source <= t).mean()),
            "median_copy": float(np.median(copy_to_source)), "t": t}


def _vector_distance(orig: np.ndarray, copies: np.ndarray, sources: np.ndarray, mirrored=None) -> dict:
    """A plain vector distance (rows), optionally also against mirrored originals."""
    d_bg, _ = _nearest(orig, orig, True)
    d_src = np.linalg.norm(copies - orig[sources], axis=1)
    d_nn, i_nn = _nearest(copies, orig, False)
    if mirrored is not None:
        d_bg = np.minimum(d_bg, _nearest(orig, mirrored, True)[0])
        d_src = np.minimum(d_src, np.linalg.norm(copies - mirrored[sources], axis=1))
        d_m, i_m = _nearest(copies, mirrored, False)
        i_nn = np.where(d_m < d_nn, i_m, i_nn)
    return _summary(d_src, i_nn == sources, d_bg)


def _thumbnails(u8: np.ndarray, side: int = 8) -> np.ndarray:
    n, h, w, c = u8.shape
    t = u8.astype(np.float64).reshape(n, side, h // side, side, w // side, c).mean((2, 4))
    t -= t.mean((1, 2), keepdims=True)
    t = t.reshape(n, -1)
    return t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-9)


def compare(orig: np.ndarray, copies: np.ndarray, sources: np.ndarray, *, k: int = 10) -> dict:
    """The four distances on uint8 (n, H, W, 3) originals and (m, H, W, 3) copies."""
    from curate.duplicates import Aligner, Descriptor

    n, src = len(orig), np.asarray(sources)
    out = {"pixel": _vector_distance(orig.reshape(n, -1) / 127.5, copies.reshape(len(copies), -1) / 127.5, src)}
    out["pixel"] = {k_: (v / np.sqrt(orig[0].size) if k_ in ("median_copy", "t") else v)
                    for k_, v in out["pixel"].items()}  # |x - y| / sqrt(D): RMS
    out["thumbnail"] = _vector_distance(_thumbnails(orig), _thumbnails(copies), src,
                                        mirrored=_thumbnails(orig[:, :, ::-1]))
    d = Descriptor()
    images = hwc_uint8_to_nchw(np.concatenate([orig, copies]))
    keys, canvases = [], []
    for s in range(0, len(images), 2048):
        kk, cc = d.describe(images[s:s + 2048])
        keys.append(kk)
        canvases.append(cc)
    keys, canvases = np.concatenate(keys), np.concatenate(canvases)
    perm = d.mirror_permutation(3)
    out["gist"] = _vector_distance(keys[:n], keys[n:], src, mirrored=keys[:n][:, perm])
    # aligned distance over the k nearest keys among the originals (copies query the originals)
    search = KeySearch(keys[:n], perm)
    cand_o = search.neighbours(np.arange(n), k)
    sims = torch.from_numpy(keys[n:]) @ torch.from_numpy(keys[:n]).T
    sims = torch.maximum(sims, torch.from_numpy(keys[n:][:, perm].copy()) @ torch.from_numpy(keys[:n]).T)
    cand_c = torch.topk(sims, min(k, n), dim=1).indices.numpy()
    verify = PairVerifier(Aligner(d.spec), canvases, True, refine_below=np.inf)
    pairs_o = np.stack([np.repeat(np.arange(n), cand_o.shape[1]), cand_o.ravel()], 1)
    pairs_c = np.stack([np.repeat(n + np.arange(len(copies)), cand_c.shape[1]), cand_c.ravel()], 1)
    d_o = verify.distances(pairs_o).reshape(n, -1).min(1)
    d_c = verify.distances(pairs_c).reshape(len(copies), -1)
    found = (cand_c == src[:, None])
    d_src = np.where(found.any(1), np.where(found, d_c, np.inf).min(1), np.inf)
    out["aligned"] = _summary(d_src, cand_c[np.arange(len(copies)), d_c.argmin(1)] == src, d_o)
    return out


def compare_table(result: dict):
    from rich.table import Table

    t = Table(title="distances compared without a threshold (originals + planted copies)")
    for c in ("distance", "source is nearest", "recall at 1 % background", "median copy", "1 % background t"):
        t.add_column(c, justify="left" if c == "distance" else "right")
    for name, r in result["compare"].items():
        t.add_row(name, f"{r['nearest']:.3f}", f"{r['recall_at_1pct']:.3f}", f"{r['median_copy']:.3f}",
                  f"{r['t']:.3f}")
    return t
