"""Channels-last / compiled score networks give the plain network's numbers; the bench
command reports self-consistent ratios."""
import copy
import json

import pytest
import torch

import curate
from curate.cli import main as cli
from curate.models import ExactScore, build_unet, fast_model
from curate.models.speed import FastModel


def _net():
    torch.manual_seed(0)
    net = build_unet("tiny", image_size=8, channels=1).eval()
    with torch.no_grad():  # the output conv starts at zero; give it weights so eps is not 0
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return net


def _images(n=5):
    g = torch.Generator().manual_seed(3)
    return torch.rand((n, 1, 8, 8), generator=g) * 2 - 1


@pytest.mark.parametrize("kw", [dict(channels_last=True), dict(compile="aot_eager"),
                                dict(channels_last=True, compile="aot_eager")])
def test_fast_model_matches_the_plain_network(kw):
    net = _net()
    plain = copy.deepcopy(net)
    fast = fast_model(net, **kw)
    assert isinstance(fast, FastModel) and fast.config == plain.config
    x, t = _images(), torch.full((5,), 0.3)
    with torch.no_grad():
        want = plain.eps(x, t)
        got = fast.eps(x, t)
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # float32, other summation order
        # Another batch size (the tracker's last chunk) works too.
        torch.testing.assert_close(fast.eps(x[:3], t[:3]), want[:3], rtol=1e-4, atol=1e-5)  # float32, other summation order
    # The tracker's scores agree (float32 trajectories through the fast network).
    a = curate.track_volume_growth(plain, x, axes=2, steps=3, divergence=None)
    b = curate.track_volume_growth(fast, x, axes=2, steps=3, divergence=None)
    torch.testing.assert_close(b.log_growth, a.log_growth, rtol=1e-4, atol=1e-6)
    assert a.log_growth.abs().max() > 1e-3  # not vacuous


def test_fast_model_refuses_what_it_cannot_do():
    net = _net()
    assert fast_model(net) is net  # nothing asked: the model itself
    exact = ExactScore(_images(2))
    with pytest.raises(TypeError, match="nn.Module"):
        fast_model(exact, channels_last=True)
    with pytest.raises(TypeError, match="eps"):
        fast_model(object(), compile="eager")


def test_bench_reports_consistent_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli(["bench", "tracker", "--preset", "tiny", "--image-size", "8", "--channels", "1", "--images", "4",
                "--settings", "2x3,1x1", "--max-steps", "2", "--loop-steps", "1", "--repeats", "1",
                "--device", "cpu", "--channels-last", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "overhead ratio" in text
    r = json.loads(out.read_text())
    assert r["environment"]["channels_last"] is True
    a, b = r["results"]
    assert (a["axes"], a["steps"], a["timed_steps"], a["evals_per_image"], a["images"]) == (2, 3, 2, 9, 4)
    assert (b["axes"], b["steps"], b["timed_steps"], b["evals_per_image"]) == (1, 1, 1, 2)
    # What a person reads is what the JSON stores: the table shows each measured ratio and rate.
    rows = [line for line in text.splitlines() if "│" in line]
    for x in (a, b):
        want = [f"{1 / x['tracker_s_per_image']:.4g}", f"{1 / x['forward_s_per_image']:.4g}",
                f"{x['overhead']:.3f}", f"{x['speedup_vs_loop']:.1f}x", f"{x['default_cost']:.3f}"]
        assert any(all(w in row for w in want) for row in rows), (want, rows)
    assert "default arguments / divergence=None" in text
    # Channels-last changes the kernels, not the answer.
    assert r["numerics"]["fast_vs_plain_float32"]["max_rel"] < 1e-3


def test_default_arguments_cost_only_algorithm_1():
    """track_volume_growth(model, images) makes exactly Algorithm 1's network evaluations,
    T (N + 1) per image, like divergence=None; asking for a divergence adds one JVP per probe
    and step (counted by a model that counts its rows)."""
    net = _net()

    class Counting:
        def __init__(self):
            self.rows = 0

        def eps(self, x, t):
            self.rows += x.shape[0]
            return net.eps(x, t)

    x = _images(5)
    for kw, per_image in (({}, 2 * 3), ({"divergence": None}, 2 * 3), ({"divergence": "hutchinson"}, 3 * 3)):
        m = Counting()
        curate.track_volume_growth(m, x, steps=3, **kw)
        assert m.rows == per_image * 5, kw


def test_rows_that_fit_free_memory():
    from curate.volume import rows_that_fit

    assert rows_that_fit(80e9, 50e6) == 800  # half of 80 GB at 50 MB per row
    assert rows_that_fit(80e9, 50e6, fraction=0.25) == 400
    assert rows_that_fit(1e9, 50e6) == 256  # never below the floor (OOM halving takes over)
    assert rows_that_fit(1e12, 1e3) == 65536 and rows_that_fit(1e9, 0) == 65536


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tracker_equals_cpu_with_the_free_memory_batch():
    net = _net().double()
    x = _images(6).double()
    cpu = curate.track_volume_growth(net, x, axes=3, steps=4, divergence=None)
    gpu = curate.track_volume_growth(net.cuda(), x.cuda(), axes=3, steps=4, divergence=None)
    torch.testing.assert_close(gpu.log_growth, cpu.log_growth, rtol=1e-9, atol=1e-9)


def test_bench_suite_writes_each_setting(tmp_path, capsys):
    out = tmp_path / "suite"
    assert cli(["bench", "suite", "--preset", "tiny", "--image-size", "16", "--channels", "1",
                "--device", "cpu", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench_cpu_n100t1000_plain.json", "bench_cpu_n1t1_plain.json"]
    r = json.loads((out / "bench_cpu_n100t1000_plain.json").read_text())["results"][0]
    assert (r["axes"], r["steps"], r["timed_steps"], r["evals_per_image"]) == (100, 1000, 1, 101000)
    # Per-image figures are scaled from the timed step to the full T.
    assert r["loop_s_per_image"] > 0 and r["overhead"] == pytest.approx(
        r["tracker_s_per_image"] / r["forward_s_per_image"])
