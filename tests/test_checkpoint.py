"""Checkpoints: bit-exact round trip, and clear refusals of truncated, mixed, mismatched and pickled files."""
import json
import pickle
import shutil

import pytest
import torch

from curate.data.tensors import digits_images
from curate.models.checkpoint import (CheckpointError, PickleRefusedError, load_checkpoint, load_model,
                                      pickle_to_safetensors, save_checkpoint, sniff)
from curate.models.unet import build_unet


def _trained(seed=0):
    """A tiny U-Net after three Adam steps on real digits, its EMA copy and its optimizer."""
    torch.manual_seed(seed)
    net = build_unet("tiny", image_size=8, channels=1)
    ema = build_unet("tiny", image_size=8, channels=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = digits_images()[:16]
    for _ in range(3):
        loss = (net.eps(x, torch.full((16,), 0.5)) - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.copy_(0.5 * pe + 0.5 * p)
    return net, ema, opt


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same(u, v)
    else:
        assert a == b


class Boom:
    """Unpickling this creates a marker file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_is_bit_exact(tmp_path):
    net, ema, opt = _trained()
    save_checkpoint(tmp_path / "ck", net, ema=ema, optimizer=opt, step=3, train_config={"lr": 1e-3})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.step == 3 and ck.train_config == {"lr": 1e-3}
    _assert_same(net.state_dict(), ck.model_state)
    _assert_same(ema.state_dict(), ck.ema_state)
    # the optimizer state survives exactly, including tuples (betas) and integer keys
    _assert_same(opt.state_dict(), ck.optimizer_state)
    opt2 = torch.optim.Adam(build_unet("tiny", image_size=8, channels=1).parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    _assert_same(opt.state_dict()["state"], opt2.state_dict()["state"])
    # load_model gives the EMA weights (eval mode) unless asked for the raw ones
    x, t = digits_images()[:4], torch.tensor([0.01, 0.2, 0.5, 1.0])
    with torch.no_grad():
        m_ema = load_model(tmp_path / "ck", device="cpu")
        m_raw = load_model(tmp_path / "ck", device="cpu", weights="model")
        assert not m_ema.training
        assert torch.equal(m_ema.eps(x, t), ema.eval().eps(x, t))
        assert torch.equal(m_raw.eps(x, t), net.eval().eps(x, t))
    # saving again over the folder replaces it atomically and leaves no temporaries
    save_checkpoint(tmp_path / "ck", net, ema=ema, optimizer=opt, step=4)
    assert load_checkpoint(tmp_path / "ck").step == 4
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "config.json", "ema.safetensors", "model.safetensors", "optimizer.json", "optimizer.safetensors"]


def test_truncated_files_are_refused(tmp_path):
    net, ema, opt = _trained()
    save_checkpoint(tmp_path / "ck", net, ema=ema, optimizer=opt, step=3)
    for name, cut in [("ema.safetensors", 1000), ("model.safetensors", 5), ("config.json", 20)]:
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(tmp_path / "ck", bad)
        data = (bad / name).read_bytes()
        (bad / name).write_bytes(data[:cut] if cut < 100 else data[:-cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(bad)


def test_wrong_architecture_and_mixed_saves_are_refused(tmp_path):
    net, ema, opt = _trained()
    save_checkpoint(tmp_path / "ck", net, ema=ema, optimizer=opt, step=3)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["model"]["ch"] = 16
    shutil.copytree(tmp_path / "ck", tmp_path / "wrong")
    (tmp_path / "wrong" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit the architecture.*other shapes"):
        load_model(tmp_path / "wrong", device="cpu")
    # a folder mixing two saves (e.g. a crash between renames) is detected
    shutil.copytree(tmp_path / "ck", tmp_path / "old")
    save_checkpoint(tmp_path / "ck", net, ema=ema, optimizer=opt, step=4)
    shutil.copy(tmp_path / "old" / "ema.safetensors", tmp_path / "ck" / "ema.safetensors")
    with pytest.raises(CheckpointError, match="different save"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="neither a curate checkpoint"):
        load_model(tmp_path, device="cpu")


def test_pickles_are_refused_and_never_run(tmp_path):
    net, ema, opt = _trained()
    marker = tmp_path / "marker"
    payload = pickle.dumps(Boom(marker))
    # a pickle in disguise inside a real checkpoint folder
    save_checkpoint(tmp_path / "ck", net, ema=ema, step=1)
    (tmp_path / "ck" / "model.safetensors").write_bytes(payload)
    with pytest.raises(PickleRefusedError, match="pickle"):
        load_model(tmp_path / "ck", device="cpu")
    # a pickle passed directly, under each usual name
    for name in ("weights.pt", "model.bin", "x.ckpt"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(PickleRefusedError, match="arbitrary code"):
            load_model(tmp_path / name, device="cpu")
    # the opt-in converter uses torch.load(weights_only=True), which refuses it too
    with pytest.raises(PickleRefusedError):
        pickle_to_safetensors(tmp_path / "weights.pt", tmp_path / "out.safetensors")
    # a torch.save zip archive named like safetensors is still recognised as a pickle
    torch.save(net.state_dict(), tmp_path / "zipped.safetensors")
    assert sniff(tmp_path / "zipped.safetensors") == "torch-zip"
    with pytest.raises(PickleRefusedError):
        load_model(tmp_path / "zipped.safetensors", device="cpu")
    assert not marker.exists()


def test_trusted_pickle_converts_exactly(tmp_path):
    net, _, _ = _trained()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    out = pickle_to_safetensors(tmp_path / "w.pt", tmp_path / "w.safetensors")
    from safetensors.torch import load_file

    _assert_same(net.state_dict(), load_file(str(out)))
