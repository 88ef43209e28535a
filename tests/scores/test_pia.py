"""PIA (Kong et al. 2024) against exact answers."""
import pytest
import torch

from curate.models import ExactScore
from curate.scores.pia import pia_distance
from curate.sde import VP
from tests.scores._models import random_images

F64 = torch.float64


def _lp(d, p):
    return (d.abs() ** p).flatten(1).sum(1) ** (1 / p)


@pytest.mark.parametrize("p", [4.0, 2.0, 1.0])
@pytest.mark.parametrize("t,t0", [(0.2, VP.t_min), (0.05, 0.01), (0.6, 0.3)])
def test_one_training_image_closed_form(p, t, t0):
    # Exact score of one image y0: eps(x, t) = (x - alpha y0) / sigma for every x. Then
    # eps0 = (x0 - alpha0 y0) / sigma0, x_t = alpha x0 + sigma eps0 and
    # eps(x_t, t) - eps0 = alpha (x0 - y0) / sigma, whatever t0: the distance is
    # alpha |x0 - y0|_p / sigma, exactly 0 for the training image.
    y0 = random_images(1, seed=1)
    imgs = torch.cat([y0, random_images(5, seed=2)])
    d = pia_distance(ExactScore(y0), imgs, t=t, t0=t0, norm=p)
    tt = torch.tensor(t, dtype=F64)
    expect = VP.alpha(tt) * _lp(imgs - y0, p) / VP.sigma(tt)
    assert d.dtype == F64 and d.shape == (6,)
    torch.testing.assert_close(d[1:], expect[1:], rtol=1e-10, atol=0)
    assert abs(d[0].item()) < 1e-12


def _mixture_eps(train, x, t):
    """eps of the exact score of ``train`` (n, ...) written independently: softmax posterior."""
    t = torch.tensor(t, dtype=F64)
    a, v = VP.alpha(t), VP.v(t)
    y, xf = train.flatten(1), x.flatten(1)
    logits = -((xf[:, None, :] - a * y[None]) ** 2).sum(-1) / (2 * v)
    ybar = torch.softmax(logits, 1) @ y
    return ((xf - a * ybar) / v.sqrt()).reshape(x.shape)


def test_many_training_images_equals_step_by_step_computation():
    # A second computation of Algorithm "PIA" (steps 1-4) with an independently written
    # exact score of 8 images, at a t where the posterior mixes several of them.
    train = random_images(8, seed=3)
    imgs = torch.cat([train[:3], random_images(3, seed=4), 0.5 * (train[3:6] + train[5:8])])
    t, t0 = 0.5, 0.02
    eps0 = _mixture_eps(train, imgs, t0)
    tt = torch.tensor(t, dtype=F64)
    xt = VP.alpha(tt) * imgs + VP.sigma(tt) * eps0
    expect = _lp(_mixture_eps(train, xt, t) - eps0, 4.0)
    got = pia_distance(ExactScore(train), imgs, t=t, t0=t0)
    torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-12)
    # Trained images outrank random ones (not the midpoints: at t = 0.5 the posterior of a
    # midpoint mixes its two neighbours, and PIA finds the model self-consistent there too).
    assert got[:3].max() < got[3:6].min()


def test_deterministic_and_independent_of_the_batch():
    from curate.scores import get

    train = random_images(6, seed=5)
    imgs = torch.cat([train[:3], random_images(4, seed=6)])
    model = ExactScore(train)
    full = get("pia")(model, imgs, seed=0).values
    perm = torch.tensor([5, 0, 3, 6])
    part = pia_distance(model, imgs[perm], batch_size=3)
    assert torch.equal(-part, full[perm])
    assert torch.equal(get("pia")(model, imgs, seed=123).values, full)  # no randomness: seed is ignored


@pytest.mark.parametrize("kwargs,match", [
    (dict(t=0.0), r"t must lie in \(0, 1\]"), (dict(t0=1.5), r"t0 must lie in \(0, 1\]"), (dict(norm=0.5), "norm must be"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_settings_are_refused(kwargs, match):
    y = random_images(2)
    with pytest.raises(ValueError, match=match):
        pia_distance(ExactScore(y), y, **kwargs)
    with pytest.raises(ValueError, match="non-empty tensor"):
        pia_distance(ExactScore(y), y[0])
