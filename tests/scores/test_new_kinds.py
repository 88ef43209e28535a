"""The new score kinds (pia, flipd, eps_norm) in the registry: settings, cost, real data."""
from pathlib import Path

import numpy as np
import pytest
import torch

import curate.scores as scores
from curate.evaluate import auroc
from curate.models import ExactScore
from curate.scores.flipd import flipd
from curate.scores.eps_norm import eps_norm
from curate.scores.pia import pia_distance
from tests.scores._models import Counting, CountingWithDivergence, random_images

NEW = ("pia", "flipd", "eps_norm")
#: The public tensor function of each kind, and the sign that turns it into the score.
PUBLIC = {"pia": (pia_distance, -1.0), "flipd": (flipd, -1.0), "eps_norm": (eps_norm, -1.0)}
CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"


def test_registered_with_params_and_defaults():
    for name in NEW:
        assert name in scores.names()
        kind = scores.get(name)
        assert kind.brain_method == "curate_" + name and kind.field == name
        assert kind.resolve({}) == kind.defaults()
        assert kind.summary and kind.source and kind.describe(kind.defaults(), 3072)
    assert scores.get("pia").defaults() == {"t": 0.2, "t0": 1e-3, "norm": 4.0}
    assert scores.get("pia").resolve({"norm": 2}) == {"t": 0.2, "t0": 1e-3, "norm": 2.0}
    assert scores.get("flipd").resolve({"probes": 8.0})["probes"] == 8
    with pytest.raises(ValueError, match="takes no setting"):
        scores.get("eps_norm").resolve({"probes": 2})
    with pytest.raises(ValueError, match="divergence must be one of"):
        scores.get("flipd").resolve({"divergence": "none"})
    rows = {r["name"]: r for r in scores.table()}
    assert rows["pia"]["nfe"] == 2 and rows["eps_norm"]["nfe"] == 1 and rows["flipd"]["nfe"] == 1


@pytest.mark.parametrize("name,settings", [
    ("pia", dict(t=0.3, t0=0.01, norm=2.0)), ("eps_norm", dict(t=0.05, norm=4.0)),
    ("flipd", dict(t=0.1, divergence="hutchinson", probes=2)), ("flipd", dict(t=0.1, divergence="auto")),
])
def test_registry_equals_public_function(name, settings):
    train = random_images(5, seed=1)
    imgs = torch.cat([train[:2], random_images(3, seed=2)])
    model = ExactScore(train)
    res = scores.get(name)(model, imgs, seed=3, **settings)
    fn, sign = PUBLIC[name]
    kw = dict(settings, seed=3) if name == "flipd" else settings
    assert torch.equal(res.values, sign * fn(model, imgs, **kw))
    assert res.values.dtype == torch.float64 and res.values.device.type == "cpu" and not res.errors


@pytest.mark.parametrize("name,settings", [
    ("pia", {}), ("eps_norm", {}), ("flipd", {}), ("flipd", dict(probes=3)), ("flipd", dict(divergence="exact")),
])
def test_nfe_counts_the_network_calls(name, settings):
    # A second computation of the cost: a wrapper counts the rows that reach eps (a JVP's
    # rows once), per image, and it must equal the kind's nfe at these settings.
    train = random_images(4, shape=(1, 3, 3), seed=1)
    imgs = random_images(5, shape=(1, 3, 3), seed=2)
    kind = scores.get(name)
    p = kind.resolve(settings)
    model = Counting(ExactScore(train))
    kind(model, imgs, **settings)
    assert model.rows / 5 == kind.nfe(9, p, model)
    # With a closed-form divergence FLIPD calls the network once (auto or exact).
    if name == "flipd" and p["divergence"] in ("auto", "exact"):
        closed = CountingWithDivergence(ExactScore(train))
        kind(closed, imgs, **settings)
        assert closed.rows / 5 == kind.nfe(9, p, closed) == 1


def _cifar(split: str, n: int, size: int = 16) -> torch.Tensor:
    from PIL import Image

    rows = [line.split(",") for line in (CIFAR / "order.csv").read_text().splitlines()[1:]]
    paths = [CIFAR / r[3] for r in rows if r[0] == split][:n]
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BOX)) for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(torch.float64) / 127.5 - 1


@pytest.mark.skipif(not (CIFAR / "order.csv").is_file(), reason=f"real CIFAR-10 not found at {CIFAR}")
def test_real_cifar_trained_images_outrank_held_out_under_the_exact_score():
    """Exact score of 64 CIFAR-10 training images (16x16, PIL BOX): every new kind ranks the
    64 above 64 test-split images, AUROC 1.

    Why exactly 1: for this perfectly memorizing model each kind has a closed form near a
    training image y that is 0 or nearly 0 at y itself and grows with the distance to y
    (PIA: alpha |x - y|_4 / sigma, exactly 0 at y; FLIPD: alpha^2 |x - y|^2 / v, exactly 0
    at y; eps_norm: |x - alpha y|_4 / sigma, (1 - alpha) |y|_4 / sigma at y with
    1 - alpha = 1e-3 at t = 0.01). A held-out image could tie only within ~2 (1 - alpha) |y|
    of a training image; measured on these 128 images, the closest test image lies 7.1 from
    its nearest training image (median |y| = 12.7, l2 in [-1, 1] units). The test prints
    the margins (lowest trained score minus highest held-out one).
    """
    train, held = _cifar("train", 64), _cifar("test", 64)
    model = ExactScore(train)
    imgs = torch.cat([train, held])
    for name, settings in [("pia", {}), ("eps_norm", {}), ("flipd", {}),
                           ("flipd", dict(divergence="hutchinson", probes=1, t=0.05))]:
        v = scores.get(name)(model, imgs, **settings).values
        a = auroc(v[:64].numpy(), v[64:].numpy())
        print(name, settings, "AUROC", a, "margin", float(v[:64].min() - v[64:].max()))
        assert a == 1.0, (name, settings, a)
