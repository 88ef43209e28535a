"""The realistic edit model (curate.duplicates.edits.draw_real / apply_real) against exact
answers: identity parameters give the image back, a pure shift, mirror or colour map moves
or maps pixels exactly, draws stay in their ranges and depend on their own seed only;
and the edit fit of curate.bench recovers a known crop, shift and colour map."""
import numpy as np
import pytest

from curate.duplicates import edits as E

IMAGES = E.natural_like(4, 32, seed=3)


def _only(**kw) -> dict:
    p = E.identity_real()
    p.update(kw)
    return p


@pytest.mark.parametrize("img", [IMAGES[0], IMAGES[1], IMAGES[2][..., 0]])
def test_identity_gives_the_image_back(img):
    out = E.apply_real(img, E.identity_real())
    assert out.dtype == np.uint8 and np.array_equal(out, img)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, -2), (2, 1), (-1, -1)])
def test_a_pure_shift_moves_pixels_exactly(dx, dy):
    img = IMAGES[0]
    out = E.apply_real(img, _only(dx=dx, dy=dy))
    h, w = img.shape[:2]
    # out[y, x] = img[y - dy, x - dx] wherever that pixel exists; edges replicate
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    ys0, xs0 = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    assert np.array_equal(out[ys, xs], img[ys0, xs0])
    if dx > 0:
        assert np.array_equal(out[:, :dx], np.repeat(out[:, dx:dx + 1], dx, 1))


def test_mirror_and_colour_map_exactly():
    img = IMAGES[1]
    assert np.array_equal(E.apply_real(img, _only(mirror=True)), img[:, ::-1])
    p = _only(gains=[1.2, 1.0, 0.8], offsets=[-5.0, 0.0, 7.0], gamma=1.5)
    want = np.clip(np.rint(255 * np.array([1.2, 1.0, 0.8]) * (img / 255.0) ** 1.5 + [-5, 0, 7]), 0, 255)
    assert np.array_equal(E.apply_real(img, p), want.astype(np.uint8))
    # noise: exactly the seeded normal draw added, then rounded and clipped
    p = _only(noise=3.0, noise_seed=9)
    want = np.clip(np.rint(img + np.random.default_rng(9).normal(0.0, 3.0, img.shape)), 0, 255)
    assert np.array_equal(E.apply_real(img, p), want.astype(np.uint8))


def test_a_crop_keeps_the_window():
    """A crop of side 0.5 at (0.25, 0.25) with the box filter on a 2x-upsampled image is the
    centre of the original exactly (box filter over 2x2 blocks of equal pixels)."""
    img = IMAGES[2][:16, :16]
    big = np.repeat(np.repeat(img, 2, 0), 2, 1)  # (32, 32, 3)
    p = _only(crop={"side": 0.5, "x0": 0.25, "y0": 0.25}, filter="nearest")
    out = E.apply_real(big, p)
    assert np.array_equal(out, np.repeat(np.repeat(img[4:12, 4:12], 4, 0), 4, 1))


def test_draws_in_range_and_per_copy_seeds():
    r = E.REAL
    for i in range(300):
        p = E.draw_real(np.random.default_rng((7, i)))
        assert 1 - r["crop_max"] <= p["crop"]["side"] <= 1
        assert 0 <= p["crop"]["x0"] <= 1 - p["crop"]["side"] + 1e-12
        assert abs(p["dx"]) <= 2 and abs(p["dy"]) <= 2 and p["filter"] in E.FILTERS
        assert np.exp(-0.4) - 1e-12 <= p["gamma"] <= np.exp(0.4) + 1e-12
        assert r["blur"][0] <= p["blur"] <= r["blur"][1]
        assert p["quality"] is None or r["quality"][0] <= p["quality"] <= r["quality"][1]
        # the offsets move mid-grey by one common brightness, whatever the channel's gain
        mid = [g * 127.5 + o for g, o in zip(p["gains"], p["offsets"])]
        assert max(mid) - min(mid) < 1e-9
    _, _, few = E.plant_real(IMAGES, 2, seed=5)
    _, _, more = E.plant_real(IMAGES, 4, seed=5)
    assert few == more[:2]  # a copy's edit does not depend on how many copies are made


def test_fit_recovers_a_known_edit():
    """A 0.9 crop shifted by one pixel, recoloured per channel: the fit finds scale 0.9,
    shift (1, 0) and the gains, and its residual is far below the unaligned one."""
    from PIL import Image

    from curate.bench._real_pairs_fit import fit_pair

    b = E.natural_like(1, 32, seed=11)[0]
    box = (1.6 + 1, 1.6, 1.6 + 1 + 28.8, 1.6 + 28.8)
    a = np.asarray(Image.fromarray(b).resize((32, 32), Image.BICUBIC, box=box)).astype(np.float64)
    a = np.clip(np.rint(a * [1.1, 1.0, 0.9] + 5), 0, 255).astype(np.uint8)
    f = fit_pair(a, b)
    assert f["scale"] == pytest.approx(0.9, abs=0.01)
    assert f["tx"] == pytest.approx(1.0, abs=0.1) and f["ty"] == pytest.approx(0.0, abs=0.1)
    assert not f["mirror"]
    assert f["gains"] == pytest.approx([1.1, 1.0, 0.9], abs=0.03)
    assert f["residual"] < 0.2 * f["residual_unaligned"]
