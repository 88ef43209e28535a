"""The reproduction audit's core (tensors only), each part against an independent answer:
find_memorized (a second computation of the same criteria), the exact score (every
sample is a copy), scipy's Wilson interval, hand-worked ceilings, scikit-learn's
isotonic regression."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curate.memorization import duplicate_groups, find_memorized
from curate.reproduction import (CRITERIA, TrainingSet, counts_per_image, evaluate, exact_groups, fit_isotonic,
                                 match, nearest, noise_ceiling, precision_at_k, rates, score_on_halves,
                                 wilson_interval)
from curate.reproduction.match import block_sizes


def _train_and_samples(digits64, n_train=300, planted=(3, 17), copies=4, seed=0):
    """Training digits with two images planted ``copies`` times; samples = noisy copies of
    training images (some within every criterion, some not) and held-out digits."""
    train = digits64[:n_train].clone()
    extra = torch.cat([train[i:i + 1].repeat(copies - 1, 1, 1, 1) for i in planted])
    train = torch.cat([train, extra])
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n_train, (60,), generator=g)
    src[:20] = torch.tensor(planted).repeat(10)
    noise = torch.randn((60, 1, 8, 8), generator=g, dtype=torch.float64) * torch.linspace(0, 0.4, 60).reshape(-1, 1, 1, 1)
    samples = torch.cat([train[src] + noise, digits64[n_train:n_train + 40]])
    return train, samples


def test_counts_equal_find_memorized(digits64):
    train, samples = _train_and_samples(digits64)
    ts = TrainingSet(train)
    got = match(samples, ts)
    want = find_memorized(samples, train)
    assert torch.equal(got.nearest, want.nn_index[:, 0])
    torch.testing.assert_close(got.distance, want.nn_dist[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.carlini_ratio, want.carlini_ratio, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.gu_ratio, want.gu_ratio, rtol=1e-12, atol=0)
    for c in CRITERIA:
        assert torch.equal(got.copies[c], want.memorized(c)), c
        counts = counts_per_image(got.group, got.copies[c], ts.group)
        assert torch.equal(counts, want.counts(c)), c
    # the check is not vacuous: some samples copy, some do not, duplicates share counts
    n_copies = int(got.copies["carlini"].sum())
    assert 0 < n_copies < len(samples)
    planted_counts = counts_per_image(got.group, got.copies["rms"], ts.group)[[3, 300, 301, 302]]
    assert len(set(planted_counts.tolist())) == 1 and planted_counts[0] > 0


def test_chunked_matching_equals_unchunked(digits64):
    train, samples = _train_and_samples(digits64, seed=1)
    ts = TrainingSet(train)
    one = match(samples, ts, memory_mb=512)
    # 0.02 MB: training chunks of a few images and one generated row at a time
    r, c = block_sizes(len(samples), ts.n_unique, ts.dim, 50, 0.02)
    assert r < len(samples) and c < ts.n_unique
    tiny = match(samples, ts, memory_mb=0.02)
    # and the samples split into uneven pieces, matched separately
    parts = [match(p, ts, memory_mb=0.05) for p in torch.split(samples, [7, 50, 43])]
    for m in (tiny,):
        assert torch.equal(m.nearest, one.nearest)
        assert torch.equal(m.distance, one.distance)
    assert torch.equal(torch.cat([p.nearest for p in parts]), one.nearest)
    assert torch.equal(torch.cat([p.carlini_ratio for p in parts]), one.carlini_ratio)
    assert torch.equal(torch.cat([p.gu_ratio for p in parts]), one.gu_ratio)


def test_nearest_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    samples, train = torch.randn(23, 1, 3, 5, generator=g), torch.randn(71, 1, 3, 5, generator=g)
    ts = TrainingSet(train)
    d, i = nearest(samples, ts, 5, memory_mb=0.004)
    ref_d, ref_i = torch.cdist(samples.reshape(23, -1).double(), train.reshape(71, -1).double()).sort(1)
    assert torch.equal(i, ref_i[:, :5])
    torch.testing.assert_close(d, ref_d[:, :5], rtol=1e-12, atol=1e-12)


def test_exact_groups_equal_duplicate_groups(digits64):
    train, _ = _train_and_samples(digits64)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(3))
    shuffled = train[perm]
    g1, f1 = exact_groups(shuffled)
    g2, f2 = duplicate_groups(shuffled)
    assert torch.equal(g1, g2) and torch.equal(f1, f2)
    assert f1.numel() == len(train) - 6  # two images planted 4 times: 6 extra copies


def test_exact_score_samples_are_all_copies(digits64):
    """The closed-form score of a training set reproduces it: every generated sample is a
    copy under every criterion, and the counts add up to the number of samples."""
    import curate

    train = digits64[:40]
    x = curate.sample(curate.ExactScore(train), 32, steps=40, seed=4, dtype=torch.float64, progress=False)
    ts = TrainingSet(train)
    m = match(x, ts)
    for c in CRITERIA:
        assert bool(m.copies[c].all()), (c, m.rms.max())
        counts = counts_per_image(m.group, m.copies[c], ts.group)
        assert int(counts.sum()) == 32
    assert float(m.rms.max()) < 1e-3  # the Tweedie step lands on the image itself


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 8192), (0, 8192), (170, 8192)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    low, high = wilson_interval(torch.tensor([float(k)]), n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert float(low[0]) == pytest.approx(ref.low, abs=1e-12)
    assert float(high[0]) == pytest.approx(ref.high, abs=1e-12)
    rate, lo2, hi2 = rates(torch.tensor([k]), n)
    assert float(rate[0]) == k / n and float(lo2[0]) <= k / n <= float(hi2[0])


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="lie in"):
        wilson_interval(torch.tensor([11.0]), 10)
    with pytest.raises(ValueError, match="one trial"):
        wilson_interval(torch.tensor([0.0]), 0)


def test_ceiling_on_a_hand_worked_case():
    # half A counts as the score, half B's labels (>= 1): positives {0, 2} score (3, 1),
    # negatives {1, 3} score (2, 0): pairs 3>2, 3>0, 1<2, 1>0 -> 3/4.
    # B -> A: A's positives {0, 1, 2} score (1, 0, 1), negative {3} score 0: (1 + 1/2 + 1) / 3.
    a, b = np.array([3, 2, 1, 0]), np.array([1, 0, 1, 0])
    c = noise_ceiling(a, b)
    assert c.auroc_a_to_b == pytest.approx(0.75)
    assert c.auroc_b_to_a == pytest.approx(2.5 / 3)
    assert c.auroc == pytest.approx((0.75 + 2.5 / 3) / 2)
    # Spearman of (3,2,1,0) with (1,0,1,0): ranks (4,3,2,1) vs (3.5,1.5,3.5,1.5)
    ra, rb = np.array([4, 3, 2, 1.0]), np.array([3.5, 1.5, 3.5, 1.5])
    rho = np.corrcoef(ra, rb)[0, 1]
    assert c.spearman == pytest.approx(rho)
    assert (c.positives_a, c.positives_b) == (3, 2)
    # identical halves: a perfect ceiling; a score equal to the counts reaches it
    same = noise_ceiling(a, a)
    assert same.auroc == 1.0 and same.spearman == pytest.approx(1.0)
    h = score_on_halves(a.astype(float), a, a)
    assert h["auroc"] == 1.0
    # labels at >= 2 copies per half: A -> B has B's positives none (AUROC undefined), B -> A:
    # A's positives {0, 1} score (1, 0), negatives {2, 3} score (1, 0): (1/2 + 1 + 0 + 1/2) / 4
    c2 = noise_ceiling(a, b, min_count=2)
    assert np.isnan(c2.auroc_a_to_b) and c2.auroc_b_to_a == pytest.approx(0.5)
    assert (c2.positives_a, c2.positives_b) == (2, 0) and c2.auroc == pytest.approx(0.5)
    # a score (0.1, 0.4, 0.3, 0.2) against A's labels: positives (0.1, 0.4) vs negatives (0.3, 0.2)
    # -> 0.1 < 0.3, 0.1 < 0.2, 0.4 > 0.3, 0.4 > 0.2: 2/4; B has no positive at 2
    h2 = score_on_halves(np.array([0.1, 0.4, 0.3, 0.2]), a, b, min_count=2)
    assert h2["auroc_labels_a"] == pytest.approx(0.5) and np.isnan(h2["auroc_labels_b"])
    with pytest.raises(ValueError, match="min_count"):
        noise_ceiling(a, b, min_count=0)


def test_ceiling_of_independent_halves_is_chance():
    """Counts of two independent draws with the same rate for every image carry no
    information about each other: the ceiling's AUROC is about 1/2."""
    rng = np.random.default_rng(5)
    a, b = rng.poisson(0.5, 20000), rng.poisson(0.5, 20000)
    c = noise_ceiling(a, b)
    assert abs(c.auroc - 0.5) < 0.02 and abs(c.spearman) < 0.03


def test_precision_at_k():
    s = np.array([0.9, 0.8, np.nan, 0.7, 0.1])
    y = np.array([True, False, True, True, False])
    assert precision_at_k(s, y, 1) == 1.0
    assert precision_at_k(s, y, 3) == pytest.approx(2 / 3)  # NaN ranks last
    assert precision_at_k(s, y, 5) == pytest.approx(3 / 5)


def test_isotonic_calibration_matches_sklearn_and_is_checked_on_the_other_half():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(6)
    n, m = 2000, 4000
    score = rng.normal(size=n)
    p_true = 1 / (1 + np.exp(-(3 * score - 9)))  # rises steeply at the top
    a, b = rng.binomial(m, p_true), rng.binomial(m, p_true)
    fit = fit_isotonic(score, a, m)
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score, a / m)
    np.testing.assert_allclose(fit(score), ref.predict(score), rtol=0, atol=1e-15)
    ev = evaluate(score, a, b, m, m)
    # the fit knows p only from half A; on half B its expected copies are near the observed
    assert ev.calibration.expected_copies == pytest.approx(ev.calibration.observed_copies, rel=0.1)
    assert ev.calibration.brier < ev.calibration.brier_constant
    assert ev.auroc > 0.9 and ev.ceiling.auroc > 0.5
    assert math.isnan(fit(np.array([np.nan]))[0])


def test_sampling_from_a_first_index_equals_the_slice(digits64):
    """sample(first=j) draws samples j.. of the seed's stream: blocks of an audit are
    the slices of one long run, whatever the block boundaries."""
    import curate

    model = curate.ExactScore(digits64[:30])
    whole = curate.sample(model, 10, steps=5, seed=7, progress=False, dtype=torch.float64)
    part = curate.sample(model, 4, steps=5, seed=7, first=3, progress=False, dtype=torch.float64)
    torch.testing.assert_close(part, whole[3:7], rtol=0, atol=1e-12)
    em = curate.sample(model, 10, method="em", steps=5, seed=7, progress=False, dtype=torch.float64)
    em_part = curate.sample(model, 4, method="em", steps=5, seed=7, first=3, progress=False, dtype=torch.float64)
    torch.testing.assert_close(em_part, em[3:7], rtol=0, atol=1e-12)


def test_correlation_ceiling_bounds_a_score_that_knows_the_true_rate():
    """Classical test theory: counts = signal + sampling noise; the true rate itself (the
    best possible score) correlates with the full counts at about sqrt(reliability)."""
    rng = np.random.default_rng(8)
    n, m = 20000, 2000
    p_true = rng.gamma(0.5, 0.002, n)
    a, b = rng.binomial(m, p_true), rng.binomial(m, p_true)
    c = noise_ceiling(a, b)
    assert c.reliability == pytest.approx(2 * c.spearman / (1 + c.spearman))
    from scipy.stats import spearmanr

    best = spearmanr(p_true, a + b).statistic
    assert best == pytest.approx(c.max_spearman, abs=0.03)
    noisy = spearmanr(p_true * rng.lognormal(0, 1, n), a + b).statistic
    assert noisy < c.max_spearman


def test_aligned_nearest_catches_edited_copies_that_pixels_miss():
    """The edit-robust criterion: a shifted, re-coloured or mirrored copy of a training
    photo is at a small aligned distance from its source, while its pixel RMS distance is
    far above the RMS criterion's threshold; unrelated photos stay far in both."""
    from curate.data.tensors import to_model_range
    from curate.duplicates import edits as E
    from curate.duplicates.nearest import AlignedNearest

    photos = E.natural_like(40, seed=11)                       # (n, 32, 32, 3) uint8
    train = to_model_range(photos[:30].transpose(0, 3, 1, 2))
    edited = [E.apply_all(photos[3], [("shift", {"dx": 3, "dy": -2})]),
              E.apply_all(photos[7], [("brightness_contrast", {"brightness": 1.2, "contrast": 0.85})]),
              E.apply_all(photos[9], [("mirror", {}), ("colour", E.edge_cases("colour")[1])])]
    queries = to_model_range(np.stack(edited + list(photos[30:36])).transpose(0, 3, 1, 2))
    an = AlignedNearest(train.numpy())
    idx, dist = an.nearest(queries.numpy())
    thr = an.threshold()
    assert idx[:3].tolist() == [3, 7, 9] and (dist[:3] <= thr).all(), (idx, dist, thr)
    assert (dist[3:] > thr).all()  # unrelated photos are no copies
    pix = match(queries, TrainingSet(train))
    assert not pix.copies["rms"][:3].any()  # the pixel criterion misses every edited copy
