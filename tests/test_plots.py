"""Figures are real PNGs of the expected size; grids hold the input pixels where expected."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from curate.data.tensors import digits_images
from curate.plots import grid_array, image_grid, metric_curves, top_bottom_grids, two_group_histogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = Image.open(path)
    img.verify()  # checks chunk CRCs
    return Image.open(path)


def test_histogram_png(tmp_path):
    rng = np.random.default_rng(0)
    p = two_group_histogram(rng.normal(2, 1, 100), torch.randn(80), tmp_path / "h.png",
                            figsize=(5, 3.5), dpi=80, title="x")
    img = _png(p)
    assert img.size == (400, 280)
    # Not blank: a histogram draws coloured bars.
    arr = np.asarray(img.convert("RGB"))
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 10
    with pytest.raises(ValueError, match="finite"):
        two_group_histogram([np.nan], [], tmp_path / "bad.png")


def test_metric_curves_png(tmp_path):
    p = metric_curves([1, 10, 50, 100], [0.7, 0.9, 0.95, 0.96], [1e-3, 1e-8, 0.0, 1e-12],
                      tmp_path / "c.png", figsize=(8, 3), dpi=50)
    assert _png(p).size == (400, 150)
    with pytest.raises(ValueError, match="equal"):
        metric_curves([1, 2], [0.5], [0.1, 0.2], tmp_path / "bad.png")


def test_grid_pixels_equal_inputs(tmp_path):
    imgs = digits_images()[:11]  # (11, 1, 8, 8), values k/8 - 1 -> exact uint8 after rounding
    zoom, pad, ncol = 3, 2, 4
    path = image_grid(imgs, tmp_path / "g.png", ncol=ncol, zoom=zoom, pad=pad)
    back = np.asarray(_png(path).convert("RGB"))
    rows = 3
    assert back.shape == (pad + rows * (8 * zoom + pad), pad + ncol * (8 * zoom + pad), 3)
    u8 = ((imgs + 1) * 127.5).round().to(torch.uint8).numpy()
    for i in range(11):
        r, c = divmod(i, ncol)
        y0, x0 = pad + r * (8 * zoom + pad), pad + c * (8 * zoom + pad)
        tile = back[y0:y0 + 8 * zoom, x0:x0 + 8 * zoom]
        # Each zoomed pixel block is one input pixel, equal in all three channels.
        assert (tile[::zoom, ::zoom, 0] == u8[i, 0]).all()
        assert (tile[zoom - 1::zoom, zoom - 1::zoom, 2] == u8[i, 0]).all()
    # Padding and the unused last cell keep the pad colour.
    assert (back[:pad] == 255).all()
    y0, x0 = pad + 2 * (8 * zoom + pad), pad + 3 * (8 * zoom + pad)
    assert (back[y0:y0 + 8 * zoom, x0:x0 + 8 * zoom] == 255).all()


def test_grid_rgb_channels():
    g = torch.Generator().manual_seed(0)
    imgs = (torch.randint(0, 256, (2, 3, 4, 5), generator=g).float() / 127.5 - 1)
    arr = grid_array(imgs, ncol=2, pad=0)
    assert arr.shape == (4, 10, 3)
    expect = ((imgs + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert (arr[:, :5] == expect[0]).all() and (arr[:, 5:] == expect[1]).all()


def test_top_bottom_grids_order(tmp_path):
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(10, 1, 2, 2, generator=g) * 2 - 1
    scores = torch.tensor([3.0, 9, 1, float("nan"), 7, 0, 5, 2, 8, 4])
    tp, bp, top, bottom = top_bottom_grids(imgs, scores, tmp_path, k=3, pad=0, ncol=3)
    assert top.tolist() == [1, 8, 4] and bottom.tolist() == [5, 2, 7]
    arr = np.asarray(Image.open(tp).convert("RGB"))
    np.testing.assert_array_equal(arr, grid_array(imgs[[1, 8, 4]], ncol=3, pad=0))
    arr = np.asarray(Image.open(bp).convert("RGB"))
    np.testing.assert_array_equal(arr, grid_array(imgs[[5, 2, 7]], ncol=3, pad=0))
