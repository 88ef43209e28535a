"""The reproduction probability against exact answers: one training image (p = 1), two mirrored
ones (half-space basins, p = 1/2), and plain Monte Carlo with the audit's own sampler."""
import math

import pytest
import torch

from curate.memorization import RMS_THRESHOLD
from curate.models import ExactScore
from curate.sampling import block_noise, sample
from curate.scores.reproduction_probability import (REPRODUCTION_PROBABILITY, log_weights, sampler_ends,
                                                    shifts, starts)
from tests.scores._models import Counting, random_images

F64 = torch.float64
KIND = REPRODUCTION_PROBABILITY


def _run(model, images, **params):
    return KIND(model, images.to(F64), **params)


def test_one_training_image_is_reproduced_from_every_start():
    x0 = random_images(1, seed=1)
    out = _run(ExactScore(x0), torch.cat([x0, random_images(1, seed=2)]), steps=20, proposals=16)
    assert out.values[0].item() == 1.0 and out.extra["reproduction_se"][0].item() == 0.0
    assert out.values[1].item() == 0.0  # another image is never the end
    assert out.extra["reproduction_log10p"][0].item() == 0.0
    assert 1.0 <= out.extra["reproduction_ess"][0].item() <= 16.0


def test_weights_are_the_prior_over_the_mixture():
    # log N(x; 0, I) - log (1/M) sum_m N(x; kappa_m u_hat, I), written out in D dimensions.
    g = torch.Generator().manual_seed(0)
    u_hat = torch.randn(12, generator=g, dtype=F64)
    u_hat /= u_hat.norm()
    x = torch.randn(7, 12, generator=g, dtype=F64) + 2.0 * u_hat
    kappa = shifts(3.0, 4)
    assert torch.equal(kappa, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64))
    log_prior = -0.5 * (x * x).sum(1)
    log_q = torch.logsumexp(torch.stack([-0.5 * ((x - k * u_hat) ** 2).sum(1) for k in kappa]), 0) - math.log(4)
    torch.testing.assert_close(log_weights(x @ u_hat, kappa), log_prior - log_q, rtol=1e-12, atol=1e-12)


def test_sampler_is_the_audits():
    # From the audit's own starts, Step 3 lands exactly where curate.sampling.sample does.
    train = random_images(3, seed=3)
    model = ExactScore(train)
    x1 = block_noise(5, 0, 0, 6, (3, 4, 4)).to(F64)
    ends = sampler_ends(model, x1, 30)
    torch.testing.assert_close(ends, sample(model, 6, steps=30, seed=5, dtype=F64, progress=False),
                               rtol=0, atol=1e-12)


def test_mirrored_pair_splits_the_prior_in_half_spaces():
    # x1 = -x0: the exact score's flow keeps the sign of x . x0, so the basins are the half-spaces
    # {x . x0 > 0} and {x . x0 < 0}: p = 1/2 each. First the hits, start by start, then p.
    x0 = random_images(1, seed=4)
    train = torch.cat([x0, -x0])
    model = ExactScore(train)
    u = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64) + 3 * x0
    x1, _ = starts(x0, u, proposals=64, shift=4.0, components=5, seed=0)
    ends = sampler_ends(model, x1[0], 100)
    hits = (ends - x0).flatten(1).pow(2).mean(1).sqrt() < RMS_THRESHOLD
    assert torch.equal(hits, (x1[0].flatten(1) @ x0.flatten()) > 0)

    out = _run(model, train, proposals=256)
    p, se = out.values, out.extra["reproduction_se"]
    assert ((p - 0.5).abs() < 4 * se).all() and (se < 0.08).all(), (p, se)
    assert (out.extra["reproduction_ess"] > 64).all()


def test_agrees_with_plain_monte_carlo_on_four_images():
    # Four images, repeated 4, 2, 1 and 1 times in the training set: the PF-ODE of the exact
    # score carries the prior onto the training mixture, so image i is reproduced with
    # probability m_i / n = 1/2, 1/4, 1/8, 1/8 (up to the Euler grid). A second, independent
    # computation is the audit's own: sample from the prior, count the samples within the
    # RMS threshold of each image.
    unique = random_images(4, seed=6)
    exact = torch.tensor([4, 2, 1, 1], dtype=F64) / 8
    model = ExactScore(unique.repeat_interleave(torch.tensor([4, 2, 1, 1]), 0))
    n = 4096
    samples = sample(model, n, steps=50, seed=11, dtype=F64, progress=False)
    mc = (torch.cdist(samples.flatten(1), unique.flatten(1)) / math.sqrt(48) < RMS_THRESHOLD).to(F64).mean(0)
    out = _run(model, unique, steps=50, proposals=512)
    p, se = out.values, out.extra["reproduction_se"]
    mc_se = torch.sqrt(mc * (1 - mc) / n)
    assert ((p - mc).abs() < 4 * torch.sqrt(se ** 2 + mc_se ** 2)).all(), (p, mc, se)
    assert ((mc - exact).abs() < 4 * mc_se + 0.01).all(), (mc, exact)  # the sampler itself
    assert ((p - exact).abs() < 4 * se + 0.01).all(), (p, exact, se)
    assert (se < 0.04).all() and (out.extra["reproduction_ess"] > 100).all()


def test_values_do_not_depend_on_the_batch():
    train = random_images(3, seed=7)
    model = ExactScore(train)
    images = torch.cat([train, random_images(2, seed=8)])
    full = _run(model, images, steps=10, proposals=8).values
    perm = torch.tensor([4, 1])
    # equal up to the exact score's float64 round-off, which depends on its matmul's batch
    torch.testing.assert_close(_run(model, images[perm], steps=10, proposals=8).values, full[perm], rtol=1e-9, atol=1e-12)


def test_nfe_counts_every_network_evaluation():
    model = Counting(ExactScore(random_images(3, seed=9)))
    params = dict(steps=9, proposals=6)
    KIND(model, random_images(2, seed=10), **params)
    assert model.rows == 2 * KIND.nfe(48, KIND.resolve(params), model)


@pytest.mark.parametrize("params,match", [(dict(proposals=1), "proposals must be"),
                                          (dict(threshold=0.0), "threshold must be")])
def test_bad_settings_are_refused(params, match):
    x0 = random_images(1)
    with pytest.raises(ValueError, match=match):
        KIND(ExactScore(x0), x0, **params)
