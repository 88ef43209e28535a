"""Report figures: two-group histograms (paper Fig. 2), metric-vs-setting curves
(Fig. 3), and grids of the highest / lowest scored images (Figs. 7-8).

Matplotlib runs on the Agg backend (no display needed). Image grids are written
pixel-exact (no axes, no resampling other than an integer nearest-neighbour zoom).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def _save(fig, path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    _plt().close(fig)
    return path


def two_group_histogram(
    a, b, path, *, labels: tuple[str, str] = ("trained", "held-out"), xlabel: str = "log volume growth",
    title: str | None = None, bins: int = 30, figsize: tuple[float, float] = (5.0, 3.5), dpi: int = 100,
) -> Path:
    """Overlaid histograms of two groups' scores (1-D each) on shared bins; writes a PNG of
    figsize * dpi pixels and returns its path."""
    plt = _plt()
    xa, xb = _np(a), _np(b)
    both = np.concatenate([xa, xb])
    if both.size == 0:
        raise ValueError("no finite scores to plot")
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=figsize)
    ax.hist(xa, bins=edges, alpha=0.6, label=f"{labels[0]} (n={xa.size})", color="tab:red")
    ax.hist(xb, bins=edges, alpha=0.6, label=f"{labels[1]} (n={xb.size})", color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path, dpi)


def metric_curves(
    xs: Sequence[float], auroc: Sequence[float], pvalue: Sequence[float], path, *, xlabel: str = "N (axes)",
    title: str | None = None, logx: bool = True, figsize: tuple[float, float] = (8.0, 3.2), dpi: int = 100,
) -> Path:
    """AUROC (left) and Welch p-value on a log scale (right) against a setting such as N
    or the number of steps; writes a PNG of figsize * dpi pixels."""
    plt = _plt()
    xs, au, pv = (np.asarray(v, dtype=np.float64) for v in (xs, auroc, pvalue))
    if not (xs.shape == au.shape == pv.shape) or xs.size == 0:
        raise ValueError(f"xs, auroc, pvalue must be equal, non-empty 1-D sequences; got {xs.shape}, {au.shape}, {pv.shape}")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=figsize)
    a1.plot(xs, au, "o-")
    a1.set_ylabel("AUROC")
    a1.set_ylim(min(0.0, float(np.nanmin(au))) - 0.02, 1.02)
    # p can underflow to 0; draw it at the smallest positive double so the log axis holds it.
    a2.plot(xs, np.maximum(pv, np.finfo(float).tiny), "o-", color="tab:orange")
    a2.set_yscale("log")
    a2.set_ylabel("Welch p-value")
    for ax in (a1, a2):
        ax.set_xlabel(xlabel)
        if logx and (xs > 0).all() and xs.max() / xs.min() > 10:
            ax.set_xscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi)


def grid_array(images: torch.Tensor, *, ncol: int = 8, zoom: int = 1, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile images (n, C, H, W) in [-1, 1] (C = 1 or 3) into a uint8 array.

    Returns (rows*(H*zoom+pad)+pad, ncol*(W*zoom+pad)+pad, 3); image i sits at row
    i // ncol, column i % ncol, its top-left pixel at (pad + r (H zoom + pad), pad + c (W zoom + pad)).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("no images to tile")
    if ncol < 1 or zoom < 1 or pad < 0:
        raise ValueError("ncol and zoom must be >= 1, pad >= 0")
    n, c, h, w = images.shape
    u8 = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if c == 1:
        u8 = u8.expand(n, 3, h, w)
    u8 = u8.permute(0, 2, 3, 1).numpy()
    if zoom > 1:
        u8 = u8.repeat(zoom, axis=1).repeat(zoom, axis=2)
    hz, wz = h * zoom, w * zoom
    ncol = min(ncol, n)
    rows = -(-n // ncol)
    out = np.full((rows * (hz + pad) + pad, ncol * (wz + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (hz + pad), pad + col * (wz + pad)
        out[y0:y0 + hz, x0:x0 + wz] = u8[i]
    return out


def image_grid(images: torch.Tensor, path, **kwargs) -> Path:
    """Write :func:`grid_array` of ``images`` as a PNG, pixel-exact; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid_array(images, **kwargs)).save(path, format="PNG")
    return path


def top_bottom_grids(images: torch.Tensor, scores, out_dir, *, k: int = 32, prefix: str = "", **kwargs):
    """Grids of the ``k`` highest- and lowest-scored images (highest first / lowest first).

    images: (n, C, H, W); scores: (n,). NaN scores are left out. Returns
    ``(top_path, bottom_path, top_idx, bottom_idx)``.
    """
    s = torch.as_tensor(np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64))
    if s.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {s.shape[0]} scores")
    valid = torch.nonzero(~torch.isnan(s)).flatten()
    order = valid[torch.argsort(s[valid], descending=True, stable=True)]
    k = min(k, order.numel())
    top, bottom = order[:k], order.flip(0)[:k]
    out_dir = Path(out_dir)
    tp = image_grid(images[top], out_dir / f"{prefix}highest.png", **kwargs)
    bp = image_grid(images[bottom], out_dir / f"{prefix}lowest.png", **kwargs)
    return tp, bp, top, bottom
