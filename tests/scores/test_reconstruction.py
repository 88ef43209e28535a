"""Reconstruction from mid noise against exact answers (the exact score of one training image)."""
import pytest
import torch

from curate import _rng
from curate.models import ExactScore
from curate.scores import get
from curate.scores.reconstruction import reconstruct
from curate.sde import VP
from tests.scores._models import Counting, random_images

F64 = torch.float64


def _closed_form_end(x0, images, t, draws, seed):
    """x_tmin = alpha(t_min) x0 + sigma(t_min)/sigma(t) (x_t - alpha(t) x0) for the PF-ODE of the
    exact score of one image x0, from x_t = alpha(t) x + sigma(t) z_k: (B, K, C, H, W)."""
    z = _rng.image_noise(images, seed, draws).to(F64)
    tt, tm = torch.tensor(t, dtype=F64), torch.tensor(VP.t_min, dtype=F64)
    xt = VP.alpha(tt) * images.unsqueeze(1) + VP.sigma(tt) * z
    return VP.alpha(tm) * x0.unsqueeze(1) + VP.sigma(tm) / VP.sigma(tt) * (xt - VP.alpha(tt) * x0.unsqueeze(1))


def _end_error(solver, steps, x0, images, t=0.5, draws=3):
    got = reconstruct(ExactScore(x0), images, t=t, steps=steps, draws=draws, solver=solver, denoise=False,
                      clip=False, dtype=F64)
    return (got - _closed_form_end(x0, images, t, draws, seed=0)).flatten(2).pow(2).mean(2).sqrt().max().item()


def test_integrated_endpoint_matches_the_linear_flow_of_one_image():
    x0 = random_images(1, seed=1)
    images = torch.cat([x0, random_images(2, seed=2)])
    # DDIM is the exponential integrator of this linear flow: exact at any step count.
    for steps in (3, 50):
        assert _end_error("ddim", steps, x0, images) < 1e-12
    assert _end_error("heun", 50, x0, images) > 2 * _end_error("euler", 50, x0, images)
    euler = [_end_error("euler", s, x0, images) for s in (100, 200, 400)]
    heun = [_end_error("heun", s, x0, images) for s in (100, 200, 400)]
    # Convergence with S: Euler first order (error ratio -> 2 per doubling), Heun second (-> 4).
    # The flow is stiff at t_min (sigma'/sigma ~ 1/(2t)), so the asymptotic orders show only
    # once h << t_min is approached; at S <= 100 Heun is *worse* than Euler (largest rms
    # endpoint error at S = 50: about 0.024 against 0.006), one reason the default is Euler.
    assert euler[0] > euler[1] > euler[2] and heun[0] > heun[1] > heun[2]
    assert 1.6 < euler[1] / euler[2] < 2.2
    assert 3.3 < heun[1] / heun[2] < 4.4
    assert heun[2] < 0.6 * euler[2]


@pytest.mark.parametrize("solver", ["euler", "heun", "ddim"])
def test_score_of_one_training_image_is_exact(solver):
    # The Tweedie step of one image's exact score returns x0 from anywhere, so every
    # reconstruction is x0: value = -rms(x - x0), exactly 0 for x0 itself, lower far away.
    x0 = random_images(1, seed=3)
    images = torch.cat([x0, 0.5 * x0, random_images(3, seed=4)])
    got = get("reconstruction")(ExactScore(x0), images.float(), t=0.5, steps=8, draws=3, solver=solver).values
    expect = -(images - x0).flatten(1).pow(2).mean(1).sqrt()
    assert got.dtype == F64 and got.shape == (5,)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    assert got[0] == got.max() and got[1] > got[2:].max()  # orientation: higher = more at risk


def test_without_the_tweedie_step_the_image_scores_sigma_min_times_the_noise():
    # d_k = |(alpha_min - 1) x0 + sigma_min z_k| / sqrt(D) ~ sigma(t_min) |z_k| / sqrt(D) (~0.01).
    x0 = random_images(1, seed=5)
    draws = 4
    got = get("reconstruction")(ExactScore(x0), x0, steps=5, draws=draws, solver="ddim", denoise=False).values
    z = _rng.image_noise(x0, 0, draws).to(F64)
    tm = torch.tensor(VP.t_min, dtype=F64)
    # the sampler's clip to [-1, 1] bounds each pixel's difference to [-1 - x0, 1 - x0]
    diff = ((VP.alpha(tm) - 1) * x0.unsqueeze(1) + VP.sigma(tm) * z).clamp(-1 - x0.unsqueeze(1), 1 - x0.unsqueeze(1))
    expect = -diff.flatten(2).pow(2).mean(2).sqrt().mean(1)
    torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-7)
    assert 0.005 < -got.item() < 0.02


def test_more_training_images_rank_trained_above_random():
    train = random_images(6, seed=6)
    images = torch.cat([train, random_images(6, seed=7)])
    v = get("reconstruction")(ExactScore(train), images, t=0.2, steps=20, draws=4).values
    assert v[:6].min() > v[6:].max()
    assert (v[:6] > -0.02).all()  # each trained image comes back to itself from t = 0.2


def test_values_do_not_depend_on_the_batch_and_follow_the_seed():
    train = random_images(4, seed=8)
    images = torch.cat([train[:2], random_images(5, seed=9)])
    model = ExactScore(train)
    kind = get("reconstruction")
    full = kind(model, images, t=0.7, steps=6, draws=3).values
    perm = torch.tensor([6, 2, 0])
    assert torch.equal(kind(model, images[perm], t=0.7, steps=6, draws=3).values, full[perm])
    other = kind(model, images, t=0.7, steps=6, draws=3, seed=1).values
    assert not torch.equal(other, full)


@pytest.mark.parametrize("solver,denoise", [("euler", True), ("heun", True), ("ddim", False)])
def test_nfe_counts_every_network_evaluation(solver, denoise):
    train = random_images(3, seed=10)
    model = Counting(ExactScore(train))
    images = random_images(5, seed=11)
    params = dict(t=0.4, steps=7, draws=3, solver=solver, denoise=denoise)
    kind = get("reconstruction")
    kind(model, images, **params)
    assert model.rows == images.shape[0] * kind.nfe(48, kind.resolve(params), model)


def test_aligned_distance_is_zero_for_the_image_itself():
    x0 = random_images(1, shape=(3, 16, 16), seed=12)
    images = torch.cat([x0, random_images(2, shape=(3, 16, 16), seed=13)])
    v = get("reconstruction")(ExactScore(x0), images, steps=4, draws=2, distance="aligned").values
    assert abs(v[0].item()) < 1e-6 and (v[1:] < -0.1).all()


@pytest.mark.parametrize("params,match", [
    (dict(t=0.0005), r"t must lie in \(t_min, 1\]"), (dict(solver="rk4"), "solver must be one of"),
    (dict(draws=0), "draws must be"), (dict(distance="l1"), "distance must be one of"),
])
def test_bad_settings_are_refused(params, match):
    x0 = random_images(1)
    with pytest.raises(ValueError, match=match):
        get("reconstruction")(ExactScore(x0), x0, **params)
