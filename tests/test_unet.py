"""The paper's U-Net: shapes, presets, the 999 t time input, parameter count of the paper preset."""
import math

import pytest
import torch

from curate.models import base
from curate.models.unet import PRESETS, UNet, build_unet, count_parameters, timestep_embedding


def _perturb(net):
    """The residual branches and output start at zero (identity blocks); give them weights."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("preset,size,channels", [("tiny", 8, 1), ("tiny", 32, 3), ("small", 32, 3),
                                                  ("small", 8, 1), ("paper", 8, 1)])
def test_shapes_and_interface(preset, size, channels):
    torch.manual_seed(0)
    # the paper topology (4 levels, 1x1 at the bottom for 8x8) at a quarter of its width, for speed
    net = build_unet(preset, image_size=size, channels=channels, **({"ch": 32} if preset == "paper" else {}))
    _perturb(net)
    x = torch.randn(3, channels, size, size)
    t = torch.tensor([1e-3, 0.5, 1.0])
    with torch.no_grad():
        out = net.eps(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    base.check_model(net)
    assert base.model_dtype(net) == torch.float32
    # float64 trajectories around a float32 network: base.eps casts in and out
    assert base.eps(net.eval(), x.double(), t.double()).dtype == torch.float64


def test_eps_is_forward_at_999t_and_depends_on_time():
    torch.manual_seed(1)
    net = _perturb(build_unet("tiny", image_size=8, channels=1).eval())
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0.25, 0.75])
    with torch.no_grad():
        assert torch.equal(net.eps(x, t), net(x, 999.0 * t))
        a, b = net.eps(x, torch.full((2,), 0.1)), net.eps(x, torch.full((2,), 0.9))
    assert (a - b).abs().max() > 1e-3


def test_sinusoidal_embedding_formula():
    ts = torch.tensor([0.0, 1.0, 998.5])
    emb = timestep_embedding(ts, 8)
    half = 4
    freqs = [math.exp(-math.log(10000.0) * k / (half - 1)) for k in range(half)]
    for row, tv in zip(emb, ts.tolist()):
        expect = [math.sin(tv * f) for f in freqs] + [math.cos(tv * f) for f in freqs]
        assert torch.allclose(row, torch.tensor(expect), atol=1e-4)


def test_paper_preset_matches_ddpm_cifar10_size():
    # DDPM's CIFAR-10 network (ch 128, mults 1,2,2,2, 2 blocks, attention at 16x16) has 35.7 M parameters.
    net = build_unet("paper", image_size=32, channels=3)
    assert PRESETS["paper"]["groups"] == 32 and PRESETS["paper"]["dropout"] == 0.1
    assert 35.5e6 < count_parameters(net) < 36.0e6
    assert sum(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 32 for m in net.modules()) > 20


def test_tiny_is_small_and_attention_placement():
    net = build_unet("tiny", image_size=8, channels=1)
    assert count_parameters(net) < 1_000_000
    paper = build_unet("paper", image_size=32, channels=3)
    from curate.models.unet import AttnBlock
    # attention at the 16x16 level (2 down + 3 up blocks) and once in the middle
    assert sum(isinstance(m, AttnBlock) for m in paper.modules()) == 2 + 3 + 1


def test_config_rebuilds_the_same_network():
    net = build_unet("small", image_size=16, channels=3, dropout=0.0)
    again = UNet(**net.config)
    assert again.config == net.config
    assert [p.shape for p in again.parameters()] == [p.shape for p in net.parameters()]


def test_bad_sizes_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of 8"):
        build_unet("paper", image_size=12, channels=3)
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        build_unet("huge")
    with pytest.raises(ValueError, match="unknown U-Net options"):
        build_unet("tiny", chanels=3)
    net = build_unet("tiny", image_size=8, channels=1)
    with pytest.raises(ValueError, match="expected x of shape"):
        net.eps(torch.zeros(1, 3, 8, 8), torch.ones(1))
