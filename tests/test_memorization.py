"""Nearest neighbours against brute force; both criteria on hand-built cases; the CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch

from curate.memorization import (
    carlini_ratio, duplicate_groups, find_memorized, gu_ratio, nearest_neighbors,
)


def _brute_loop(samples, train, k):
    a, b = samples.reshape(len(samples), -1).double(), train.reshape(len(train), -1).double()
    dists, idxs = [], []
    for x in a:
        d = [math.sqrt(float(((x - y) ** 2).sum())) for y in b]
        order = sorted(range(len(d)), key=d.__getitem__)[:k]
        dists.append([d[j] for j in order])
        idxs.append(order)
    return torch.tensor(dists, dtype=torch.float64), torch.tensor(idxs)


@pytest.mark.parametrize("memory_mb", [0.01, 0.003, 64.0])
def test_nearest_neighbors_equals_brute_force(memory_mb):
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(37, 1, 3, 5, generator=g)  # D = 15
    train = torch.randn(101, 1, 3, 5, generator=g)
    k = 6
    d, i = nearest_neighbors(samples, train, k, memory_mb=memory_mb)
    # Independent check 1: cdist + sort.
    ref = torch.cdist(samples.reshape(37, -1).double(), train.reshape(101, -1).double())
    ref_d, ref_i = ref.sort(1)
    assert torch.equal(i, ref_i[:, :k])
    torch.testing.assert_close(d, ref_d[:, :k], rtol=1e-12, atol=1e-12)
    # Independent check 2: a plain Python loop.
    loop_d, loop_i = _brute_loop(samples, train, k)
    assert torch.equal(i, loop_i)
    torch.testing.assert_close(d, loop_d, rtol=1e-12, atol=1e-12)


def test_nearest_neighbors_chunks_split_unevenly():
    # 0.01 MB = 1310 float64 values: train chunks of 43 over n = 101 (43+43+15),
    # row chunks of 10 over m = 37; the answer must not depend on it.
    g = torch.Generator().manual_seed(1)
    samples, train = torch.randn(37, 15, generator=g), torch.randn(101, 15, generator=g)
    small = nearest_neighbors(samples, train, 3, memory_mb=0.01)
    big = nearest_neighbors(samples, train, 3, memory_mb=512)
    assert torch.equal(small[1], big[1]) and torch.equal(small[0], big[0])


def test_nearest_neighbors_bad_input():
    with pytest.raises(ValueError, match="values per image"):
        nearest_neighbors(torch.zeros(2, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbors(torch.zeros(2, 4), torch.zeros(3, 4), k=4)
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbors(torch.full((2, 4), math.nan), torch.zeros(3, 4))


def _points(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_criteria_hand_computed():
    # Sample at the origin; distances to the three training points are listed per case.
    # case A: d = (1, 4, 4): l = 1 / (0.5 * 3) = 2/3 -> memorized; Gu 1/4 -> memorized
    # case B: d = (2, 4, 6): l = 2 / (0.5 * 4) = 1 -> not (strict); Gu 1/2 -> not
    # case C: d = (1, 2, 6): l = 2/3 -> memorized; Gu 1/2 -> not
    dist = _points([1, 4, 4], [2, 4, 6], [1, 2, 6])
    torch.testing.assert_close(carlini_ratio(dist, n_nearest=50), _points(2 / 3, 1.0, 2 / 3))
    torch.testing.assert_close(gu_ratio(dist), _points(0.25, 0.5, 0.5))
    # n_c = 2 uses only the two nearest: case B -> 2 / (0.5 * 3) = 4/3.
    torch.testing.assert_close(carlini_ratio(dist, n_nearest=2)[1], torch.tensor(4 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="two nearest"):
        gu_ratio(dist[:, :1])


def test_find_memorized_geometry_and_counts():
    # Training points on the axes of R^2 at radii 1, 4, -4 (x) and 6 (y).
    train = _points([1, 0], [4, 0], [-4, 0], [0, 6])
    samples = _points(
        [1.1, 0],    # d = (0.1, 2.9, 5.1, 6.1): Carlini 0.1/(0.5*3.55) < 1, Gu 0.034 -> both, copies #0
        [0.9, 0],    # copies #0 again
        [0, 0],      # d = (1, 4, 4, 6): l = 1/(0.5*3.75) = 0.533 -> Carlini; Gu 1/4 -> Gu too, nn #0
        [0, 3],      # d = (3, sqrt10, 5, 5): nn #3
    )
    res = find_memorized(samples, train)
    d = torch.cdist(samples, train).sort(1).values
    expect_c = d[:, 0] / (0.5 * d.mean(1))
    torch.testing.assert_close(res.carlini_ratio, expect_c)
    torch.testing.assert_close(res.gu_ratio, d[:, 0] / d[:, 1])
    # Last sample: d = (3, sqrt 10, 5, 5): l = 3 / (0.5 * 4.04) = 1.48, Gu 0.95 -> neither.
    assert res.carlini.tolist() == [True, True, True, False]
    assert res.gu.tolist() == [True, True, True, False]
    assert res.nn_index[:, 0].tolist() == [0, 0, 0, 3]
    assert res.counts_gu.tolist() == [3, 0, 0, 0]
    assert res.counts("carlini").tolist() == [3, 0, 0, 0]
    assert res.settings["k"] == 4  # n < n_c = 50: the mean runs over all 4
    # a subset's counts: samples 1 and 3 (hand-computed: one copy of #0, sample 3 copies nothing)
    assert res.counts_in(torch.tensor([False, True, False, True])).tolist() == [1, 0, 0, 0]
    assert res.counts_in(torch.tensor([True, False, True, False]), "gu").tolist() == [2, 0, 0, 0]


def test_exact_duplicates_in_training_set():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(20, 1, 4, 4, generator=g)
    train = torch.cat([base, base[3:4].repeat(5, 1, 1, 1)])  # image 3 appears 6 times
    samples = base[3:4] + 1e-3 * torch.randn(4, 1, 4, 4, generator=g)
    group, first = duplicate_groups(train)
    assert first.tolist() == list(range(20))
    assert group.tolist() == list(range(20)) + [3] * 5
    res = find_memorized(samples, train)
    assert res.gu.all() and res.carlini.all()
    counts = res.counts("gu")
    assert counts[3] == 4 and counts[20:].tolist() == [4] * 5 and counts.sum() == 4 * 6
    assert res.summary()["memorized_images_gu"] == 1 and res.summary()["n_unique_train"] == 20
    # every copy of a duplicated image carries its group's count in a subset too; all = counts()
    assert res.counts_in(torch.tensor([True, False, False, True]), "gu")[[3, 20, 24]].tolist() == [2, 2, 2]
    assert torch.equal(res.counts_in(torch.ones(4, dtype=torch.bool), "gu"), counts)
    # Without de-duplication the copies hide each other: d_1 = d_2, Gu ratio 1.
    raw = find_memorized(samples, train, dedupe=False)
    torch.testing.assert_close(raw.gu_ratio, torch.ones(4, dtype=torch.float64))
    assert not raw.gu.any()


def test_save_load_roundtrip(tmp_path):
    g = torch.Generator().manual_seed(3)
    train = torch.randn(30, 1, 2, 2, generator=g)
    samples = torch.cat([train[:5] + 1e-3, torch.randn(5, 1, 2, 2, generator=g)])
    res = find_memorized(samples, train, n_nearest=10)
    res.save(tmp_path / "mem")
    back = type(res).load(tmp_path / "mem")
    assert torch.equal(back.counts_carlini, res.counts_carlini)
    assert torch.equal(back.carlini, res.carlini)
    assert back.settings["n_nearest"] == 10
    assert json.loads((tmp_path / "mem.json").read_text())["memorized_samples_gu"] == int(res.gu.sum())


def test_cli_memorization(tmp_path):
    from safetensors.torch import save_file

    from curate.cli import main

    g = torch.Generator().manual_seed(4)
    train = torch.rand(40, 1, 4, 4, generator=g) * 2 - 1
    samples = torch.cat([train[[7, 7, 9]] + 0.001, torch.rand(3, 1, 4, 4, generator=g) * 2 - 1])
    save_file({"images": train}, str(tmp_path / "train.safetensors"))
    save_file({"images": samples.contiguous()}, str(tmp_path / "samples.safetensors"))
    out = tmp_path / "mem.json"
    rc = main(["memorization", "--samples", str(tmp_path / "samples.safetensors"),
               "--train", str(tmp_path / "train.safetensors"), "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    expect = find_memorized(samples, train)
    assert data["memorized_samples_carlini"] == int(expect.carlini.sum())
    assert data["counts_carlini"] == expect.counts_carlini.tolist()
    assert data["counts_carlini"][7] == 2 and data["counts_carlini"][9] == 1
    # A file that is not safetensors is refused with a clear message, nothing written.
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    out2 = tmp_path / "mem2.json"
    with pytest.raises(SystemExit, match="safetensors"):
        main(["memorization", "--samples", str(tmp_path / "bad.safetensors"),
              "--train", str(tmp_path / "train.safetensors"), "--out", str(out2)])
    assert not out2.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nearest_neighbors_cuda_matches_cpu():
    g = torch.Generator().manual_seed(5)
    samples, train = torch.randn(300, 48, generator=g), torch.randn(2000, 48, generator=g)
    d, i = nearest_neighbors(samples, train, 5, memory_mb=1)
    dc, ic = nearest_neighbors(samples.cuda(), train.cuda(), 5, memory_mb=1)
    assert ic.device.type == "cuda"
    assert torch.equal(i, ic.cpu())
    torch.testing.assert_close(d, dc.cpu())


def test_rms_criterion_and_names_with_dots(tmp_path):
    """The plain criterion is |x - nn_1| / sqrt(D) < threshold, computed here by hand; a
    save path with a dot in its name keeps it (mem_s1.5 is not mem_s1)."""
    g = torch.Generator().manual_seed(5)
    train = torch.rand(40, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(12, 3, 4, 4, generator=g)
    samples = train[:12] + noise * torch.linspace(0.01, 0.3, 12).reshape(-1, 1, 1, 1)
    res = find_memorized(samples, train, rms_threshold=0.10)
    d = torch.cdist(samples.flatten(1).double(), train.flatten(1).double())
    rms = d.min(1).values / math.sqrt(48)
    assert torch.equal(res.rms, rms < 0.10) and 0 < int(res.rms.sum()) < 12
    want = torch.bincount(d.argmin(1)[rms < 0.10], minlength=40)
    assert torch.equal(res.counts("rms"), want)
    assert res.summary()["memorized_samples_rms"] == int((rms < 0.10).sum())
    with pytest.raises(ValueError, match="criterion must be one of"):
        res.counts("l2")
    res.save(tmp_path / "mem_s1.5")
    res.save(tmp_path / "mem_s1.75")
    a, b = type(res).load(tmp_path / "mem_s1.5"), type(res).load(tmp_path / "mem_s1.75")
    assert torch.equal(a.rms, res.rms) and torch.equal(b.counts_rms, res.counts_rms)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mem_s1.5.json", "mem_s1.5.safetensors",
                                                           "mem_s1.75.json", "mem_s1.75.safetensors"]
