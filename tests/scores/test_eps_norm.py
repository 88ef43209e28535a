"""eps_norm (SimA, Rao et al. 2025) against exact answers."""
import pytest
import torch

from curate.models import ExactScore
from curate.scores import get
from curate.scores.eps_norm import eps_norm
from curate.sde import VP
from tests.scores._models import random_images

F64 = torch.float64


@pytest.mark.parametrize("p", [4.0, 2.0])
@pytest.mark.parametrize("t", [VP.t_min, 0.01, 0.3])
def test_one_training_image_closed_form(p, t):
    # Exact score of one image y0: eps(x, t) = (x - alpha y0) / sigma, so the norm is
    # |x - alpha y0|_p / sigma; the training image's is (1 - alpha) |y0|_p / sigma.
    y0 = random_images(1, seed=1)
    imgs = torch.cat([y0, random_images(5, seed=2)])
    got = eps_norm(ExactScore(y0), imgs, t=t, norm=p)
    tt = torch.tensor(t, dtype=F64)
    a, s = VP.alpha(tt), VP.sigma(tt)
    expect = ((imgs - a * y0).abs() ** p).flatten(1).sum(1) ** (1 / p) / s
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=0)
    torch.testing.assert_close(got[0], (1 - a) * (y0.abs() ** p).sum() ** (1 / p) / s, rtol=1e-10, atol=0)


def test_sign_training_images_sit_on_modes(digits64):
    # Orientation check on the exact score of 20 digits: the clean-input noise prediction
    # is small at every training image (x on a mode) and large elsewhere, so -|eps| ranks
    # all trained digits above all held-out ones.
    train, held = digits64[:20], digits64[100:120]
    res = get("eps_norm")(ExactScore(train), torch.cat([train, held]))
    assert res.values[:20].min() > res.values[20:].max()
    assert not res.errors


def test_deterministic_and_independent_of_the_batch():
    train = random_images(6, seed=5)
    imgs = torch.cat([train[:3], random_images(4, seed=6)])
    model = ExactScore(train)
    full = get("eps_norm")(model, imgs, seed=0, t=0.2).values
    perm = torch.tensor([6, 2, 4])
    assert torch.equal(-eps_norm(model, imgs[perm], t=0.2, batch_size=2), full[perm])
    assert torch.equal(get("eps_norm")(model, imgs, seed=9, t=0.2).values, full)


def test_non_finite_output_is_reported():
    class Bad:
        def eps(self, x, t):
            out = x.clone()
            out[1] = float("nan")
            return out

    res = get("eps_norm")(Bad(), random_images(3))
    assert set(res.errors) == {1} and torch.isnan(res.values[1]) and torch.isfinite(res.values[[0, 2]]).all()


def test_bad_settings_are_refused():
    y = random_images(2)
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        eps_norm(ExactScore(y), y, t=-0.1)
    with pytest.raises(ValueError, match="norm must be a number >= 1"):
        get("eps_norm")(ExactScore(y), y, norm=0.2)
