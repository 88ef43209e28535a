"""ExactScore against independent computations."""
import pytest
import torch

import curate
from curate.sde import VP as sde
from curate.models import score

F64 = torch.float64


def _direct_score(y, x, t):
    """s = grad log (1/n) sum_i N(x; alpha y_i, v I) by autograd of an explicit log-sum-exp."""
    x = x.clone().requires_grad_(True)
    a, v = sde.alpha(t), sde.v(t)
    d2 = ((x.reshape(1, -1) - a * y.reshape(y.shape[0], -1)) ** 2).sum(1)
    torch.logsumexp(-d2 / (2 * v), 0).backward()
    return x.grad


@pytest.mark.parametrize("t", [1e-3, 0.05, 0.5, 1.0])
def test_score_equals_autograd_of_log_density(digits64, t):
    y = digits64[:25]
    model = curate.ExactScore(y)
    x = torch.cat([digits64[:2], digits64[600:602], 0.3 * digits64[603:604]])
    tt = torch.full((5,), t, dtype=F64)
    got = score(model, x, tt)
    for i in range(5):
        want = _direct_score(y, x[i], torch.tensor(t, dtype=F64))
        assert torch.allclose(got[i], want, rtol=1e-8, atol=1e-8 / float(sde.v(torch.tensor(t))))


@pytest.mark.parametrize("t", [2e-3, 0.02, 0.3])
def test_divergence_equals_autograd_trace(digits64, t):
    y = digits64[:30]
    model = curate.ExactScore(y)
    x = torch.cat([digits64[1:3], digits64[800:802]])
    # Points between training images, where several weights matter.
    x = torch.cat([x, 0.5 * (digits64[3:4] + digits64[4:5])])
    tt = torch.full((x.shape[0],), t, dtype=F64)
    got = model.divergence(x, tt)
    for i in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(lambda z: model.score(z.unsqueeze(0), tt[:1])[0], x[i])
        trace = torch.diagonal(J.reshape(64, 64)).sum()
        assert got[i].item() == pytest.approx(trace.item(), rel=1e-7, abs=1e-6)


def test_chunked_log_sum_exp_equals_one_chunk(digits64):
    y = digits64[:300]
    one = curate.ExactScore(y)
    many = curate.ExactScore(y, memory_mb=1e-5)  # forces chunks of a single image
    assert many._chunk(4, 3, 8) == 1
    x = digits64[1000:1004]
    t = torch.tensor([1e-3, 0.01, 0.2, 0.9], dtype=F64)
    assert torch.allclose(one.eps(x, t), many.eps(x, t), rtol=1e-10, atol=1e-12)
    assert torch.allclose(one.divergence(x, t), many.divergence(x, t), rtol=1e-10)


def test_large_training_set_fits_in_a_memory_budget():
    # n = 50,000 images of D = 3,072 (CIFAR-10 size) in float32, 32 queries, 64 MB budget.
    g = torch.Generator().manual_seed(0)
    y = torch.rand((50_000, 3, 32, 32), generator=g) * 2 - 1
    model = curate.ExactScore(y, memory_mb=64)
    x = y[:32] + 0.01 * torch.randn((32, 3, 32, 32), generator=g)
    t = torch.full((32,), 0.01)
    e = model.eps(x, t)
    # At small t each query's posterior collapses onto the training image it was built from.
    ybar = x.reshape(32, -1) - e.reshape(32, -1) * sde.sigma(t).reshape(-1, 1)
    ybar = ybar / sde.alpha(t).reshape(-1, 1)
    assert torch.allclose(ybar, y[:32].reshape(32, -1), atol=1e-3)


def test_bad_training_sets_are_refused(digits64):
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        curate.ExactScore(digits64[:, 0])
    with pytest.raises(ValueError, match="at least one"):
        curate.ExactScore(digits64[:0])
    bad = digits64[:3].clone()
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        curate.ExactScore(bad)
    with pytest.raises(ValueError, match="built for images"):
        curate.ExactScore(digits64[:3]).eps(torch.zeros(1, 1, 4, 4, dtype=F64), torch.ones(1, dtype=F64))
