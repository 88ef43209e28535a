"""FLIPD's local intrinsic dimension against exact answers.

Gaussian data on a d-dimensional linear subspace of R^D (x = U z, z ~ N(0, I_d)):
p_t = N(0, alpha^2 P + v I) with P = U U^T, so with c = alpha^2 / (alpha^2 + v), for
x = U z + n (n orthogonal to the subspace) and FLIPD evaluated at alpha x,

    LID(x) = D - sigma div eps + |eps|^2 = d c + v c^2 |z|^2 / alpha^2 + alpha^2 |n|^2 / v,

which tends to d as t -> 0 on the subspace (and blows up off it).
"""
import math

import pytest
import torch

from curate.models import ExactScore
from curate.scores import get
from curate.scores.flipd import flipd
from curate.sde import VP
from tests.scores._models import EpsOnly, GaussianSubspace, GaussianSubspaceWithDivergence, random_images

F64 = torch.float64
SHAPE = (3, 4, 4)
D, d = 48, 5


def _basis(axis_aligned: bool) -> torch.Tensor:
    if axis_aligned:
        return torch.eye(D, dtype=F64)[:, [0, 7, 13, 30, 41]]
    g = torch.Generator().manual_seed(0)
    return torch.linalg.qr(torch.randn(D, d, generator=g, dtype=F64))[0]


def _points(U):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, d, generator=g, dtype=F64)
    n = torch.randn(4, D, generator=g, dtype=F64)
    n = 0.05 * (n - (n @ U) @ U.T)
    n[:2] = 0  # two points on the subspace, two just off it
    return z, n, (z @ U.T + n).reshape(4, *SHAPE)


def _closed_form(z, n, t):
    t = torch.tensor(t, dtype=F64)
    a2, v = VP.alpha(t) ** 2, VP.v(t)
    c = a2 / (a2 + v)
    return d * c + v * c**2 * (z**2).sum(1) / a2 + a2 * (n**2).sum(1) / v


@pytest.mark.parametrize("t", [0.3, 0.05, 1e-3])
@pytest.mark.parametrize("how", ["closed", "exact", "hutchinson"])
def test_gaussian_subspace_exact_lid(t, how):
    U = _basis(axis_aligned=True)
    z, n, x = _points(U)
    if how == "closed":
        model, div = GaussianSubspaceWithDivergence(U, SHAPE), "exact"
    else:
        model, div = GaussianSubspace(U, SHAPE), how
    # A diagonal Jacobian (axis-aligned subspace) makes Rademacher probes exact: z_i^2 = 1.
    got = flipd(model, x, t=t, divergence=div, probes=3)
    torch.testing.assert_close(got, _closed_form(z, n, t), rtol=1e-10, atol=1e-9)


def test_gaussian_subspace_lid_tends_to_d():
    U = _basis(axis_aligned=False)
    z, n, x = _points(U)
    model = GaussianSubspace(U, SHAPE)
    ts = [0.5, 0.1, 0.01, 1e-3, 1e-4]
    lids = torch.stack([flipd(model, x[:2], t=t, divergence="exact") for t in ts])  # (5, 2), D JVPs each
    for t, lid in zip(ts, lids):
        torch.testing.assert_close(lid, _closed_form(z[:2], n[:2], t), rtol=1e-9, atol=1e-8)
    err = (lids - d).abs()
    assert (err[1:] < err[:-1]).all()  # monotone approach
    assert err[-1].max() < 1e-3  # |LID - d| = O(v) = 2e-5 d at t = 1e-4


def test_gaussian_subspace_hutchinson_within_its_standard_deviation():
    # A rotated subspace has a full Jacobian: sigma J_eps = I - c P. Rademacher probes give
    # sigma z^T J z with variance 2 sum_{i != j} (c P_ij)^2 per probe; with 64 probes the
    # estimate must lie within 4 standard deviations (the probes are fixed by the seed, so
    # this deterministic test either always passes or never).
    U = _basis(axis_aligned=False)
    z, n, x = _points(U)
    t, probes = 0.05, 64
    got = flipd(GaussianSubspace(U, SHAPE), x, t=t, divergence="hutchinson", probes=probes, seed=3)
    tt = torch.tensor(t, dtype=F64)
    c = VP.alpha(tt) ** 2 / (VP.alpha(tt) ** 2 + VP.v(tt))
    P = U @ U.T
    sd = math.sqrt(2 * (c * P).pow(2).sum().item() - 2 * (c * P.diagonal()).pow(2).sum().item()) / math.sqrt(probes)
    exact = _closed_form(z, n, t)
    assert ((got - exact).abs() < 4 * sd).all()
    assert (got - exact).abs().max() > 1e-6  # it is an estimate, not the closed form


@pytest.mark.parametrize("div", ["auto", "exact", "hutchinson"])
@pytest.mark.parametrize("t", [0.05, 1e-3])
def test_one_training_image(div, t):
    # Exact score of one image y0: at alpha x, s = alpha (y0 - x) / v and div s = -D / v, so
    # LID(x) = alpha^2 |x - y0|^2 / v: exactly 0 at the training image, at every t.
    y0 = random_images(1, seed=1)
    imgs = torch.cat([y0, random_images(4, seed=2)])
    model = ExactScore(y0) if div == "auto" else EpsOnly(ExactScore(y0))
    got = flipd(model, imgs, t=t, divergence=div, probes=2)
    tt = torch.tensor(t, dtype=F64)
    expect = VP.alpha(tt) ** 2 * (imgs - y0).pow(2).flatten(1).sum(1) / VP.v(tt)
    torch.testing.assert_close(got[1:], expect[1:], rtol=1e-10, atol=0)
    assert abs(got[0].item()) < 1e-8


def test_probes_are_per_image_and_seeded():
    train = random_images(5, seed=7)
    imgs = torch.cat([train[:2], random_images(4, seed=8)])
    model = EpsOnly(ExactScore(train))  # no closed form: Hutchinson probes
    kind = get("flipd")
    full = kind(model, imgs, seed=4, t=0.3, probes=3).values
    perm = torch.tensor([5, 1, 3])
    part = flipd(model, imgs[perm], t=0.3, probes=3, seed=4, batch_size=4)  # other chunks and order
    assert torch.equal(-part, full[perm])
    other = kind(model, imgs, seed=5, t=0.3, probes=3).values
    assert not torch.allclose(other, full)  # another seed, other probes


def test_bad_settings_are_refused():
    y = random_images(2)
    with pytest.raises(ValueError, match="divergence must be one of"):
        flipd(ExactScore(y), y, divergence="trace")
    with pytest.raises(ValueError, match="probes must be an integer >= 1"):
        flipd(ExactScore(y), y, probes=0)
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        flipd(ExactScore(y), y, t=2.0)
    with pytest.raises(ValueError, match="probes must be"):
        get("flipd")(ExactScore(y), y, probes=0)
