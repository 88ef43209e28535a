"""The tracker against exact answers (docs/design.md, section 5)."""
import math

import pytest
import torch

import curate
from curate.sde import VP as sde
from curate.volume import NonFiniteError, VolumeGrowth
from curate.volume_reference import reference_log_growth
from tests._oracles import GaussianScore, euler_growth

F64 = torch.float64


def _one_image_multiplier(t):
    # One training image: f is affine with slope -beta/2 (1 - 1/v), so each axis
    # stretches by exactly 1 + dt beta/2 (1/v - 1) per Euler step.
    return 0.5 * sde.beta(t) * (1 / sde.v(t) - 1)


@pytest.mark.parametrize("method", ["fd", "jvp"])
def test_single_training_image_matches_closed_form(digits64, method):
    y = digits64[:1]
    model = curate.ExactScore(y)
    N, T = 3, 50
    r = curate.track_volume_growth(model, y, axes=N, steps=T, method=method, divergence=None)
    exact = N * euler_growth(_one_image_multiplier, sde.t_min, T)
    assert r.log_growth.dtype == F64
    assert r.log_growth.item() == pytest.approx(exact, rel=1e-10)


def test_single_image_approaches_continuous_solution(digits64):
    # Away from t = 0 the Euler error is small: (N/2) log(v(t1)/v(t0)) (Eq. 12).
    y = digits64[:1]
    N, T, t0 = 4, 400, 0.1
    r = curate.track_volume_growth(curate.ExactScore(y), y, axes=N, steps=T, t_min=t0, method="jvp",
                                   divergence=None)
    t = torch.tensor([t0, t0 + T * sde.dt], dtype=F64)
    cont = N / 2 * math.log(sde.v(t[1]) / sde.v(t[0]))
    assert r.log_growth.item() == pytest.approx(cont, rel=5e-3)


@pytest.mark.parametrize("method", ["fd", "jvp"])
@pytest.mark.parametrize("c", [0.3, 2.0])
def test_gaussian_data_is_exact(method, c):
    model = GaussianScore(c)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand((3, 1, 4, 4), generator=g, dtype=F64) * 2 - 1)
    N, T = 5, 200
    r = curate.track_volume_growth(model, x, axes=N, steps=T, method=method, divergence="exact")
    # f = g(t) x with g = -beta/2 (1 - 1/S): a linear ODE.
    mult = lambda t: -0.5 * sde.beta(t) * (1 - 1 / model.S(t))  # noqa: E731
    assert torch.allclose(r.log_growth, torch.full((3,), N * euler_growth(mult, sde.t_min, T), dtype=F64),
                          rtol=1e-10, atol=0)
    # Divergence: nabla.f = D g(t), summed on the grid.
    D = 16
    ts = sde.time_grid(T, sde.t_min)
    div = (sde.dt * D * mult(ts)).sum()
    assert torch.allclose(r.divergence_integral, div.expand(3), rtol=1e-10)
    # Hutchinson with Rademacher probes is exact for a diagonal Jacobian.
    h = curate.track_volume_growth(model, x, axes=1, steps=T, method=method, divergence="hutchinson")
    assert torch.allclose(h.divergence_integral, div.expand(3), rtol=1e-10)
    # Prior term at the end of the Euler trajectory: x_T = prod(1 + dt g) x_0.
    scale = torch.prod(1 + sde.dt * mult(ts))
    expect_prior = sde.prior_logp(x * scale)
    assert torch.allclose(r.prior_logp, expect_prior, rtol=1e-12)
    assert torch.allclose(r.generation_logp, r.prior_logp + r.divergence_integral)


def test_gaussian_generation_logp_is_the_data_likelihood():
    # Over the whole grid the PF-ODE log-likelihood approaches log N(x; 0, S(t_min) I).
    c = 0.5
    model = GaussianScore(c)
    x = torch.linspace(-0.9, 0.9, 16, dtype=F64).reshape(1, 1, 4, 4)
    r = curate.track_volume_growth(model, x, axes=1, steps=1000, method="jvp", divergence="exact")
    S0 = model.S(torch.tensor(sde.t_min, dtype=F64))
    exact = (-0.5 * (x**2).sum() / S0 - 8 * torch.log(2 * math.pi * S0)).item()
    assert r.generation_logp.item() == pytest.approx(exact, rel=2e-3)


def test_fd_with_small_sigma_matches_jvp(digits64):
    train, held = digits64[:12], digits64[200:203]
    model = curate.ExactScore(train)
    imgs = torch.cat([train[:3], held])
    kw = dict(axes=4, steps=20, t_min=0.02, divergence=None)
    fd = curate.track_volume_growth(model, imgs, sigma=1e-6, method="fd", **kw)
    jv = curate.track_volume_growth(model, imgs, method="jvp", **kw)
    assert torch.allclose(fd.log_growth, jv.log_growth, rtol=1e-5, atol=1e-6)


def test_full_dimensional_volume_equals_log_det_of_the_euler_map(digits64):
    # With N = D and stretch="volume", each step adds log|det(I + dt J_f)| exactly;
    # the paper's per-axis norms ("norm") can only be larger (Hadamard's inequality).
    train = digits64[:6, :, 2:6, 2:6].contiguous()  # D = 16
    model = curate.ExactScore(train)
    img = digits64[300:301, :, 2:6, 2:6].contiguous()
    T, t0 = 8, 0.01
    r = curate.track_volume_growth(model, img, axes=16, steps=T, t_min=t0, method="jvp",
                                   stretch="volume", divergence="exact", return_curve=True)
    paper = curate.track_volume_growth(model, img, axes=16, steps=T, t_min=t0, method="jvp",
                                       divergence=None)
    x, total = img.reshape(1, 16).clone(), 0.0
    for k in range(T):
        t = torch.tensor([t0 + k * sde.dt], dtype=F64)
        step = lambda z: z + sde.dt * curate.models.drift(model, z.reshape(1, 1, 4, 4), t).reshape(16)  # noqa: E731
        J = torch.autograd.functional.jacobian(step, x[0])
        total += torch.linalg.slogdet(J).logabsdet.item()
        x = step(x[0]).unsqueeze(0).detach()
    assert r.log_growth.item() == pytest.approx(total, rel=1e-9, abs=1e-9)
    assert paper.log_growth.item() > total + 1e-3


def test_full_dimensional_growth_approaches_divergence_integral(digits64):
    # Away from t = 0 (small dt * J), log det(I + dt J) ~ dt tr J.
    train = digits64[:6, :, 2:6, 2:6].contiguous()
    model = curate.ExactScore(train)
    imgs = torch.cat([train[:2], digits64[300:302, :, 2:6, 2:6]])
    # The "volume" sum differs from dt tr J at second order, -dt^2/2 tr(J^2) per step.
    for stretch, rtol in (("norm", 2e-3), ("volume", 2e-2)):
        fd = curate.track_volume_growth(model, imgs, axes=16, steps=200, t_min=0.2, method="fd", sigma=1e-4,
                                        stretch=stretch, divergence="exact")
        assert torch.allclose(fd.log_growth, fd.divergence_integral, rtol=rtol)


def test_batched_tracker_equals_per_image_loop(digits64):
    model = curate.ExactScore(digits64[:20])
    train, held = digits64[:3], digits64[100:104]
    for imgs, t0 in ((train, sde.t_min), (torch.cat([train, held]), 0.05)):
        r = curate.track_volume_growth(model, imgs, axes=5, steps=30, t_min=t0, return_curve=True,
                                       divergence=None)
        for i in range(len(imgs)):
            ref = reference_log_growth(model, imgs[i], axes=5, sigma=0.05, steps=30, t_min=t0)
            assert torch.allclose(r.curve[i], ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", ["fd", "jvp"])
def test_scores_do_not_depend_on_batching_or_order(digits64, method):
    model = curate.ExactScore(digits64[:30])
    imgs = torch.cat([digits64[:4], digits64[500:504]])
    kw = dict(axes=3, steps=5, t_min=0.1, method=method, divergence="hutchinson", probes=2)
    whole = curate.track_volume_growth(model, imgs, **kw)
    perm = torch.tensor([5, 0, 7, 2, 1, 6, 3, 4])
    parts = curate.track_volume_growth(model, imgs[perm], batch_size=3, **kw)
    inv = torch.argsort(perm)
    for a, b in ((whole.log_growth, parts.log_growth[inv]), (whole.generation_logp, parts.generation_logp[inv])):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # Same pixels in float32 give the same directions (keys hash float32 pixels).
    f32 = curate.track_volume_growth(model, imgs.float(), dtype=F64, **kw)
    assert torch.allclose(whole.log_growth, f32.log_growth, rtol=1e-6)
    # A different seed gives different directions.
    other = curate.track_volume_growth(model, imgs, seed=1, **kw)
    assert not torch.allclose(whole.log_growth[4:], other.log_growth[4:])


def test_hutchinson_is_unbiased_for_the_exact_score(digits64):
    model = curate.ExactScore(digits64[:10])
    img = digits64[400:401]
    ex = curate.track_volume_growth(model, img, steps=3, t_min=0.3, divergence="exact")
    hu = curate.track_volume_growth(model, img, steps=3, t_min=0.3, divergence="hutchinson", probes=4000)
    exact = ex.divergence_integral.item()
    assert hu.divergence_integral.item() == pytest.approx(exact, rel=0.02)


def test_jacobian_trace_path_equals_exact_divergence(digits64):
    # divergence="exact" on a model without .divergence uses D JVPs; compare with ExactScore's formula.
    model = curate.ExactScore(digits64[:10])

    class EpsOnly:
        def eps(self, x, t):
            return model.eps(x, t)

    img = digits64[[0, 700]]
    a = curate.track_volume_growth(model, img, steps=4, t_min=0.05, divergence="exact")
    b = curate.track_volume_growth(EpsOnly(), img, steps=4, t_min=0.05, divergence="exact")
    assert torch.allclose(a.divergence_integral, b.divergence_integral, rtol=1e-9)


def test_exact_score_separates_training_images_by_generation_logp(digits64):
    # The perfectly memorizing model: training images are far likelier than held-out ones.
    train = digits64[:16]
    model = curate.ExactScore(train)
    imgs = torch.cat([train[:8], digits64[900:908]])
    r = curate.track_volume_growth(model, imgs, steps=1000, method="fd", divergence="exact")
    assert r.generation_logp[:8].min() > r.generation_logp[8:].max()


def test_result_shapes_and_curve(digits64):
    model = curate.ExactScore(digits64[:5])
    r = curate.track_volume_growth(model, digits64[:3], axes=2, steps=7, return_curve=True)
    assert isinstance(r, VolumeGrowth) and len(r) == 3
    assert r.curve.shape == (3, 7) and torch.equal(r.curve[:, -1], r.log_growth)
    assert r.settings["axes"] == 2 and r.settings["dtype"] == "float64"
    none = curate.track_volume_growth(model, digits64[:3], divergence=None)
    assert none.generation_logp is None and none.curve is None


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        (torch.zeros(1, 8, 8, dtype=F64), {}, r"\(B, C, H, W\)"),
        (torch.full((2, 1, 8, 8), 3.0, dtype=F64), {}, "scaled to"),
        (torch.zeros(0, 1, 8, 8, dtype=F64), {}, "empty"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"axes": 65}, "axes"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"axes": 0}, "axes"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"sigma": 0.0}, "sigma"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"sigma": float("nan")}, "sigma"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"steps": 0}, "steps"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"steps": 1001}, "steps"),
        (torch.zeros(2, 1, 8, 8, dtype=F64), {"method": "rk4"}, "method"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.long), {}, "floating"),
    ],
)
def test_bad_input_is_refused(digits64, images, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        curate.track_volume_growth(curate.ExactScore(digits64[:2]), images, **kwargs)


def test_nan_image_is_named(digits64):
    imgs = digits64[:4].clone()
    imgs[2, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"images \[2\]"):
        curate.track_volume_growth(curate.ExactScore(digits64[:2]), imgs)


def test_not_a_score_model_is_refused(digits64):
    with pytest.raises(TypeError, match="eps"):
        curate.track_volume_growth(object(), digits64[:1])


class _NaNAfter:
    """The exact score, except it returns NaN for one image once t passes t_bad."""

    def __init__(self, inner, bad_image, t_bad):
        self.inner, self.bad, self.t_bad = inner, bad_image, t_bad

    def eps(self, x, t):
        out = self.inner.eps(x, t)
        hit = (x.reshape(x.shape[0], -1) - self.bad.reshape(1, -1)).abs().amax(1) < 0.2
        return torch.where((hit & (t > self.t_bad)).reshape(-1, 1, 1, 1), float("nan"), out)


def test_non_finite_network_output_names_image_and_step(digits64):
    inner = curate.ExactScore(digits64[:10])
    imgs = digits64[[0, 1, 2]]
    model = _NaNAfter(inner, imgs[1], t_bad=0.0035)
    with pytest.raises(NonFiniteError, match=r"image 1: .* step 3"):
        curate.track_volume_growth(model, imgs, axes=2, steps=10, divergence=None)
    marked = curate.track_volume_growth(model, imgs, axes=2, steps=10, divergence=None, on_error="mark",
                                        batch_size=2)
    clean = curate.track_volume_growth(inner, imgs, axes=2, steps=10, divergence=None)
    assert marked.failed.tolist() == [False, True, False]
    assert 1 in marked.errors and "step 3" in marked.errors[1]
    assert torch.isnan(marked.log_growth[1])
    assert torch.allclose(marked.log_growth[[0, 2]], clean.log_growth[[0, 2]], rtol=1e-12)


def test_float32_trajectories_lose_precision_where_score_is_large(digits64):
    # docs/design.md, section 2: finite differences of float32 trajectories cancel off the training set.
    model32 = curate.ExactScore(digits64[:16].float())
    model64 = curate.ExactScore(digits64[:16])
    held = digits64[1000:1004]
    kw = dict(axes=4, steps=30, divergence=None)
    r64 = curate.track_volume_growth(model64, held, **kw)
    r32 = curate.track_volume_growth(model32, held.float(), **kw)
    assert r32.log_growth.dtype == F64  # accumulated in float64 regardless
    assert not torch.allclose(r32.log_growth, r64.log_growth, rtol=1e-3)


class _MemoryLimited:
    """The exact score behind a device that runs out of memory above ``limit`` rows."""

    def __init__(self, inner, limit):
        self.inner, self.limit, self.calls = inner, limit, []

    def eps(self, x, t):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"pretend: {x.shape[0]} rows do not fit")
        return self.inner.eps(x, t)


def test_out_of_memory_is_answered_with_smaller_chunks(digits64):
    inner = curate.ExactScore(digits64[:10])
    imgs = digits64[:6]
    kw = dict(axes=3, steps=4, divergence=None)
    want = curate.track_volume_growth(inner, imgs, **kw)
    limited = _MemoryLimited(inner, limit=5)
    got = curate.track_volume_growth(limited, imgs, batch_size=6, eval_batch=24, **kw)
    assert torch.allclose(got.log_growth, want.log_growth, rtol=1e-12)
    assert max(limited.calls) > 5 and limited.calls[-1] <= 5  # it failed big, then fit
    with pytest.raises(torch.OutOfMemoryError):
        curate.track_volume_growth(_MemoryLimited(inner, limit=0), imgs, **kw)
