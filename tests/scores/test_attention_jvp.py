"""Forward-mode derivatives through attention layers (curate._autodiff.jvp).

PyTorch's fused attention kernels (CPU flash attention; CUDA flash / memory-efficient)
have no forward-mode derivative: a plain ``torch.func.jvp`` through
``F.scaled_dot_product_attention`` raises NotImplementedError whenever one of them is
chosen, in any grad mode. ``_autodiff.jvp`` selects the math kernel inside the JVP. Here
its results are checked against references that use no forward mode at all: central
finite differences of a float64 copy of the network, and reverse-mode Jacobians.

Whether a plain jvp fails depends on the kernel PyTorch picks: curate's U-Net feeds SDPA
a transposed (non-contiguous) query, for which this CPU build picks the math kernel, so
there a plain jvp may succeed; diffusers' attention and a contiguous query get the flash
kernel and fail. The tests accept either outcome for a plain jvp through a whole network
(it must then agree), and require the failure for the bare contiguous call.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from curate import _autodiff, _rng
from curate.models import DiffusersUNetAdapter
from curate.models.unet import build_unet
from curate.sde import VP

F64 = torch.float64
GRAD_MODES = {"enable_grad": torch.enable_grad, "no_grad": torch.no_grad}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fused flash / mem-efficient SDPA)")


def curate_unet(seed=0, size=8):
    """curate's tiny U-Net with self-attention at size x size. Its zero-initialised layers (the
    attention output projection, each block's last conv, the output conv) get random
    weights, as after training, so that attention shapes the derivative."""
    torch.manual_seed(seed)
    net = build_unet("tiny", image_size=size, attn_resolutions=(size,)).eval()
    assert any(type(m).__name__ == "AttnBlock" for m in net.modules()), "the U-Net must contain attention"
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.5 / p[0].numel() ** 0.5)
    return net


def diffusers_unet(seed=0, size=8):
    """A small diffusers UNet2DModel with attention blocks, in curate's adapter."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8)
    return DiffusersUNetAdapter(unet.eval())


NETS = {"curate_unet": curate_unet, "diffusers_unet": diffusers_unet}


def _fd_reference(model, x, v, t):
    """(eps(x + h v) - eps(x - h v)) / 2h on a float64 copy of the model (h = 1e-4)."""
    m64 = copy.deepcopy(model).to(F64)
    x, v, t = x.to(F64), v.to(F64), t.to(F64)
    with torch.no_grad():
        return (m64.eps(x + 1e-4 * v, t) - m64.eps(x - 1e-4 * v, t)) / 2e-4


def _check_network(model, device, mode):
    model = model.to(device)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 3, 8, 8, generator=g) * 2 - 1).to(device)
    v = torch.randn(3, 3, 8, 8, generator=g).to(device)
    t = torch.tensor([0.05, 0.3, 0.8], device=device)

    def f(z):
        return model.eps(z, t)

    with GRAD_MODES[mode]():
        out, jv = _autodiff.jvp(f, x, v)
        try:
            plain = torch.func.jvp(f, (x,), (v,))[1]
        except NotImplementedError:
            plain = None
        eps = model.eps(x, t)
    assert jv.dtype == torch.float32 and torch.isfinite(jv).all()
    torch.testing.assert_close(out, eps.detach(), rtol=1e-5, atol=1e-5)
    ref = _fd_reference(model.cpu(), x.cpu(), v.cpu(), t.cpu())
    scale = ref.abs().max().item()
    assert scale > 0.1  # a derivative worth comparing
    torch.testing.assert_close(jv.detach().cpu().double(), ref, rtol=1e-3, atol=1e-4 * scale)
    if plain is not None:  # the math kernel was chosen anyway: the same numbers
        torch.testing.assert_close(plain.detach(), jv.detach(), rtol=1e-5, atol=1e-6 * scale)
    return plain is None


@pytest.mark.parametrize("mode", list(GRAD_MODES))
@pytest.mark.parametrize("net", list(NETS))
def test_jvp_through_attention_networks_cpu(net, mode):
    plain_failed = _check_network(NETS[net](), "cpu", mode)
    if net == "diffusers_unet":
        assert plain_failed, "diffusers' attention gets a fused kernel on this CPU: a plain jvp must fail"


@pytest.mark.parametrize("mode", list(GRAD_MODES))
def test_plain_jvp_fails_on_the_fused_kernel_and_the_helper_does_not(mode):
    # Why the helper exists: a contiguous query gets CPU flash attention.
    g = torch.Generator().manual_seed(0)
    q, k, v, dq = (torch.randn(2, 1, 16, 8, generator=g) for _ in range(4))

    def attend(a):
        return F.scaled_dot_product_attention(a, k, v)

    with GRAD_MODES[mode]():
        with pytest.raises(NotImplementedError):
            torch.func.jvp(attend, (q,), (dq,))
        _, jv = _autodiff.jvp(attend, q, dq)
    h = 1e-4
    with torch.no_grad():
        q64, dq64 = q.double(), dq.double()
        ref = (F.scaled_dot_product_attention(q64 + h * dq64, k.double(), v.double())
               - F.scaled_dot_product_attention(q64 - h * dq64, k.double(), v.double())) / (2 * h)
    torch.testing.assert_close(jv.double(), ref, rtol=1e-4, atol=1e-5)


@CUDA
@pytest.mark.parametrize("mode", list(GRAD_MODES))
@pytest.mark.parametrize("net", list(NETS))
def test_jvp_through_attention_networks_cuda(net, mode):
    _check_network(NETS[net](), "cuda", mode)


# ------------------------------------------------------- scores through attention


def _jacobian_eps(model, x, t):
    """d eps / dx at each image of x (B, C, H, W), by reverse mode on a float64 copy: (B, D, D)."""
    m64 = copy.deepcopy(model).to(F64)
    D = x[0].numel()
    out = []
    for xi in x.to(F64):
        tt = torch.full((1,), t, dtype=F64)
        J = torch.autograd.functional.jacobian(lambda z: m64.eps(z.reshape(1, *xi.shape), tt).reshape(D),
                                               xi.reshape(D))
        out.append(J)
    return torch.stack(out), m64


@pytest.mark.parametrize("net", list(NETS))
def test_flipd_through_attention_equals_reverse_mode_trace(net):
    from curate.scores.flipd import _STREAM, flipd

    model = NETS[net](size=4)
    g = torch.Generator().manual_seed(2)
    imgs = torch.rand(2, 3, 4, 4, generator=g, dtype=F64) * 2 - 1
    t, probes, D = 0.05, 3, 48
    tt = torch.tensor(t, dtype=F64)
    a, sig = VP.alpha(tt).item(), VP.sigma(tt).item()
    J, m64 = _jacobian_eps(model, a * imgs, t)  # FLIPD looks at alpha x
    with torch.no_grad():
        e = m64.eps(a * imgs, torch.full((2,), t, dtype=F64)).reshape(2, D)
    with torch.enable_grad():
        exact = flipd(model, imgs, t=t, divergence="exact", batch_size=64)
        hutch = flipd(model, imgs, t=t, divergence="hutchinson", probes=probes, seed=7)
    ref_exact = D - sig * torch.diagonal(J, dim1=1, dim2=2).sum(1) + (e * e).sum(1)
    z = _rng.rademacher(_rng.image_keys(imgs, 7), _STREAM, probes * D).reshape(2, probes, D)
    ref_hutch = D - sig * torch.einsum("bkd,bde,bke->bk", z, J, z).mean(1) + (e * e).sum(1)
    torch.testing.assert_close(exact, ref_exact, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(hutch, ref_hutch, rtol=1e-4, atol=1e-3)


def test_tracker_jvp_and_hutchinson_through_attention():
    import curate

    model = curate_unet(size=4)
    g = torch.Generator().manual_seed(3)
    imgs = torch.rand(2, 3, 4, 4, generator=g, dtype=F64) * 2 - 1
    # Tangent mode (float32 network, float64 trajectories) against Algorithm 1 with a tiny
    # sigma on a float64 copy of the network: the sigma -> 0 limit, by finite differences.
    with torch.enable_grad():
        jvp = curate.track_volume_growth(model, imgs, axes=3, steps=3, method="jvp", seed=1,
                                         divergence="hutchinson", probes=2)
    m64 = copy.deepcopy(model).to(F64)
    fd = curate.track_volume_growth(m64, imgs, axes=3, steps=3, method="fd", sigma=1e-5, seed=1, dtype=F64)
    torch.testing.assert_close(jvp.log_growth, fd.log_growth, rtol=1e-4, atol=1e-4)
    # Hutchinson at step 0 (t = t_min): div s = -(1/sigma) z^T (d eps/dx) z over the probes
    # of curate._rng's stream 1 (the tracker's stream for step 0), from reverse mode.
    one = curate.track_volume_growth(model, imgs, axes=1, steps=1, method="jvp", seed=1,
                                     divergence="hutchinson", probes=2)
    t = torch.tensor(VP.t_min, dtype=F64)
    J, _ = _jacobian_eps(model, imgs, VP.t_min)
    z = _rng.rademacher(_rng.image_keys(imgs, 1), 1, 2 * 48).reshape(2, 2, 48)
    div_s = -torch.einsum("bkd,bde,bke->bk", z, J, z).mean(1) / VP.sigma(t)
    expect = VP.dt * (-0.5 * VP.beta(t) * (48 + div_s))
    torch.testing.assert_close(one.divergence_integral, expect, rtol=1e-4, atol=1e-4)
