"""Samplers against exact answers: the exact score of a few digits and a Gaussian data set."""
import pytest
import torch

from curate.sde import VP as sde
from curate.cli import main as cli_main
from curate.data.tensors import digits_images
from curate.models.checkpoint import save_checkpoint
from curate.models.exact import ExactScore
from curate.models.unet import build_unet
from curate.sampling import NOISE_BLOCK, block_noise, sample


class GaussianScore:
    """Exact eps of data N(0, c^2 I): s = -x / (alpha^2 c^2 + v), eps = -sigma s."""

    image_shape = (1, 4, 4)

    def __init__(self, c):
        self.c = c

    def eps(self, x, t):
        a2, v = sde.alpha(t) ** 2, sde.v(t)
        return (torch.sqrt(v) / (a2 * self.c ** 2 + v)).reshape(-1, 1, 1, 1) * x


def _nn_dist(x, ref):
    return torch.cdist(x.flatten(1).double(), ref.flatten(1).double()).min(1).values


@pytest.mark.parametrize("method", ["euler", "heun", "em"])
def test_exact_score_samples_are_training_images(method):
    train = digits_images(dtype=torch.float64)[:5]
    model = ExactScore(train)
    x = sample(model, 24, method=method, steps=100, seed=0, progress=False, dtype=torch.float64)
    assert x.shape == (24, 1, 8, 8) and x.dtype == torch.float64
    d = _nn_dist(x, train)
    assert d.max() < 1e-3  # each sample is a training image (distances between digits are ~5-10)
    hit = torch.cdist(x.flatten(1), train.flatten(1)).argmin(1)
    assert len(set(hit.tolist())) >= 4  # and the samples spread over the training set


@pytest.mark.parametrize("method", ["euler", "heun", "em"])
def test_gaussian_data_variance(method):
    c = 0.5
    x = sample(GaussianScore(c), 3000, method=method, steps=200, seed=1, progress=False, clip=False,
               dtype=torch.float64, batch_size=1000)
    var = x.var().item()
    assert abs(var - c * c) / (c * c) < 0.04, var
    assert abs(x.mean().item()) < 0.01


def test_reproducible_by_seed_and_independent_of_batch_size():
    model = ExactScore(digits_images(dtype=torch.float64)[:20])
    kw = dict(steps=20, progress=False, dtype=torch.float64)
    a = sample(model, 70, seed=3, batch_size=70, **kw)
    b = sample(model, 70, seed=3, batch_size=17, **kw)
    c = sample(model, 70, seed=4, batch_size=70, **kw)
    assert torch.allclose(a, b, atol=1e-9)
    assert (a - c).abs().max() > 0.1
    # noise of sample j depends on (seed, j) only, across block boundaries
    whole = block_noise(3, 0, 0, 3 * NOISE_BLOCK, (1, 2, 2))
    part = block_noise(3, 0, NOISE_BLOCK - 5, 2 * NOISE_BLOCK + 7, (1, 2, 2))
    assert torch.equal(whole[NOISE_BLOCK - 5:2 * NOISE_BLOCK + 7], part)
    em1 = sample(model, 10, method="em", seed=3, batch_size=10, **kw)
    em2 = sample(model, 10, method="em", seed=3, batch_size=3, **kw)
    assert torch.allclose(em1, em2, atol=1e-9)


def test_bad_arguments():
    model = ExactScore(digits_images()[:3])
    with pytest.raises(ValueError, match="unknown sampling method"):
        sample(model, 2, method="ddim", progress=False)
    with pytest.raises(TypeError, match="not a score model"):
        sample(object(), 2, progress=False)
    with pytest.raises(ValueError, match="image shape"):
        sample(type("M", (), {"eps": lambda self, x, t: x})(), 2, progress=False)


def test_cli_sample_writes_tensor_pngs_and_grid(tmp_path):
    torch.manual_seed(0)
    net = build_unet("tiny", image_size=8, channels=1)
    with torch.no_grad():  # an untrained net predicts 0; give it a real output
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    save_checkpoint(tmp_path / "ck", net, ema=net, step=0)
    assert cli_main(["sample", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "s.safetensors"), "-n", "5", "--steps", "4",
                     "--seed", "2", "--no-progress", "--grid", str(tmp_path / "grid.png"), "--device", "cpu"]) == 0
    from safetensors.torch import load_file

    got = load_file(str(tmp_path / "s.safetensors"))["images"]
    expect = sample(net.eval(), 5, steps=4, seed=2, progress=False)
    assert torch.equal(got, expect)
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert cli_main(["sample", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "pngs"), "-n", "3", "--steps", "2",
                     "--no-progress", "--device", "cpu"]) == 0
    from PIL import Image

    files = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(files) == 3 and Image.open(files[0]).size == (8, 8)
    # the former positional form still works for one release, with a deprecation warning
    with pytest.warns(DeprecationWarning, match="--model MODEL --out OUT"):
        assert cli_main(["sample", str(tmp_path / "ck"), str(tmp_path / "old.safetensors"), "-n", "5", "--steps", "4",
                         "--seed", "2", "--no-progress", "--device", "cpu"]) == 0
    assert torch.equal(load_file(str(tmp_path / "old.safetensors"))["images"], expect)
