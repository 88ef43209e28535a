"""Adapters: a generic eps-network at 999 t, and a diffusers UNet2DModel DDPM with the exact time map."""
import json

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from curate.sde import VP as sde
from curate.data.tensors import digits_images
from curate.models import base
from curate.models.adapters import DiffusersUNetAdapter, DiscreteTimeMap, EpsNetAdapter, ddpm_betas
from curate.models.exact import ExactScore
from curate.models.unet import build_unet


def _alphabar_numpy():
    """DDPM CIFAR-10 schedule, computed independently of the adapter: linear betas 1e-4..0.02, 1000 steps."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def _t_of_alphabar(ab):
    """The continuous t with alpha(t)^2 = alphabar, by root finding on sde.m."""
    target = -np.log(ab)
    return brentq(lambda t: 2 * float(sde.m(torch.tensor(t, dtype=torch.float64))) - target, 0.0, 2.0,
                  xtol=1e-15, rtol=1e-15)


def test_eps_net_adapter_calls_net_at_999t():
    torch.manual_seed(0)
    y = digits_images()[:5].double()
    exact = ExactScore(y)
    calls = []

    def net(x, timesteps):  # an eps network in the paper's convention: time input 999 t
        calls.append(timesteps)
        return exact.eps(x, timesteps / 999.0)

    model = EpsNetAdapter(net)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.3, 1.0], dtype=torch.float64)
    assert torch.allclose(base.score(model, x, t), exact.score(x, t), rtol=1e-12, atol=1e-12)
    assert torch.allclose(calls[-1], 999.0 * t)
    unet = build_unet("tiny", image_size=8, channels=1).eval()
    with torch.no_grad():
        assert torch.equal(EpsNetAdapter(unet).eps(x.float(), t.float()), unet.eps(x.float(), t.float()))
    assert EpsNetAdapter(unet).dtype == torch.float32
    with pytest.raises(ValueError, match="shaped like its input"):
        EpsNetAdapter(lambda x, s: x[:, :1, :4])(x, t)


def test_time_map_is_exact_at_integer_steps_and_monotone():
    tm = DiscreteTimeMap(ddpm_betas())
    ab = _alphabar_numpy()
    steps = [0, 1, 10, 250, 500, 998, 999]
    ts = torch.tensor([_t_of_alphabar(ab[i]) for i in steps], dtype=torch.float64)
    assert torch.allclose(tm.step(ts), torch.tensor(steps, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(tm.time(torch.tensor(steps, dtype=torch.float64)), ts, rtol=1e-10)
    grid = sde.time_grid()  # the paper's grid t_min..1
    i = tm.step(grid)
    # t_min sits just above step 0; t = 1 at step 995.6 (the DDPM's -log alphabar_999 = 10.117
    # exceeds the VP-SDE's 2 m(1) = 10.05 by the second-order terms of log(1 - beta))
    assert (i.diff() > 0).all() and 0 < i[0] < 0.1 and 995.5 < i[-1] < 995.7
    # docs/design.md, section 1: step i corresponds to t ~ (i + 1) / 1000, to within a few steps
    assert (i - (1000 * grid - 1)).abs().max() < 4


@pytest.fixture(scope="module")
def diffusers_unet():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()


def test_diffusers_score_matches_the_formula(diffusers_unet):
    model = DiffusersUNetAdapter(diffusers_unet)
    ab = _alphabar_numpy()
    x = digits_images()[:4] * 0.5 + 0.1 * torch.randn(4, 1, 8, 8)
    for i in (0, 37, 500, 999):
        t = torch.full((4,), _t_of_alphabar(ab[i]), dtype=torch.float64)
        with torch.no_grad():
            got = base.score(model, x.double(), t)
            expect = -diffusers_unet(x, torch.full((4,), i)).sample.double() / np.sqrt(1 - ab[i])
        assert torch.allclose(got, expect, rtol=1e-5, atol=1e-5 * expect.abs().max().item())
    # between two steps the network is evaluated at the fractional step where -log alphabar,
    # interpolated linearly between the steps, equals 2 m(t)
    t_mid = 0.5 * (_t_of_alphabar(ab[500]) + _t_of_alphabar(ab[501]))
    L = -np.log(ab)
    frac = 500 + (2 * float(sde.m(torch.tensor(t_mid, dtype=torch.float64))) - L[500]) / (L[501] - L[500])
    t_mid = torch.full((4,), t_mid, dtype=torch.float64)
    i_mid = model.timestep(t_mid)
    assert 500.3 < frac < 500.7 and torch.allclose(i_mid, torch.full((4,), frac, dtype=torch.float64), atol=1e-9)
    with torch.no_grad():
        got = model.eps(x, t_mid)
        expect = diffusers_unet(x, torch.full((4,), frac, dtype=torch.float32)).sample
    assert torch.allclose(got, expect, atol=1e-6)
    nearest = DiffusersUNetAdapter(diffusers_unet, time_map="nearest")
    assert nearest.timestep(t_mid).eq(torch.round(i_mid)).all()


def test_diffusers_folders_load_and_pickles_are_refused(diffusers_unet, tmp_path, capfd):
    from curate.models.checkpoint import PickleRefusedError, load_model

    sched = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001,
             "beta_end": 0.02, "beta_schedule": "linear", "prediction_type": "epsilon"}
    # a bare UNet folder with its scheduler config beside it (like google/ddpm-cifar10-32)
    diffusers_unet.save_pretrained(tmp_path / "flat", safe_serialization=True)
    (tmp_path / "flat" / "scheduler_config.json").write_text(json.dumps(sched))
    # a pipeline folder: unet/ and scheduler/
    diffusers_unet.save_pretrained(tmp_path / "pipe" / "unet", safe_serialization=True)
    (tmp_path / "pipe" / "scheduler").mkdir()
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0.02, 0.7])
    capfd.readouterr()
    with torch.no_grad():
        expect = DiffusersUNetAdapter(diffusers_unet).eps(x, t)
        for folder in ("flat", "pipe"):
            model = load_model(tmp_path / folder, device="cpu")
            assert "accelerate" not in capfd.readouterr().err  # no advice a user cannot act on
            assert isinstance(model, DiffusersUNetAdapter)
            assert torch.allclose(model.eps(x, t), expect, atol=1e-6)
    # pickle-only weights are refused, nothing loaded
    diffusers_unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert not (tmp_path / "bin" / "diffusion_pytorch_model.safetensors").exists()
    with pytest.raises(PickleRefusedError, match="pickle"):
        load_model(tmp_path / "bin", device="cpu")
    sched["prediction_type"] = "v_prediction"
    (tmp_path / "flat" / "scheduler_config.json").write_text(json.dumps(sched))
    with pytest.raises(ValueError, match="epsilon"):
        load_model(tmp_path / "flat", device="cpu")
