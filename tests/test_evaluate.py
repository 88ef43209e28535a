"""Metrics against independent computations; the denoising-loss baseline against the exact score."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, pearsonr, rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from curate.sde import VP as sde
from curate.data.tensors import digits_images
from curate.evaluate import (
    auroc, best_method, denoising_loss, evaluate_method, method_table, network_evaluations,
    spearman, tpr_at_fpr, welch_t,
)
from curate.models.exact import ExactScore


def test_auroc_hand_cases():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1.0], [1.0]) == 0.5
    # pairs: (2 vs 1) win, (2 vs 2) tie, (2 vs 3) loss -> (1 + 0.5) / 3
    assert auroc([2.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_with_ties_matches_mann_whitney_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 8, size=57).astype(float) + 1  # many ties
    neg = rng.integers(0, 8, size=81).astype(float)
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert auroc(pos, neg) == pytest.approx(u / (pos.size * neg.size), abs=1e-12)
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)
    assert auroc(torch.tensor(pos), torch.tensor(neg)) == auroc(pos, neg)


def test_auroc_drops_nan_and_refuses_empty():
    assert auroc([3, 4, math.nan], [1, 2]) == 1.0
    with pytest.raises(ValueError, match="no"):
        auroc([math.nan], [1.0])


@pytest.mark.parametrize("seed", [0, 3])
def test_tpr_at_fpr_matches_sklearn_roc_curve(seed):
    rng = np.random.default_rng(seed)
    pos = rng.normal(2.0, 1.0, 300).round(1)  # rounding makes ties
    neg = rng.normal(0.0, 1.0, 500).round(1)
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    fpr, tpr, _ = roc_curve(labels, np.r_[pos, neg], drop_intermediate=False)
    for target in (0.0, 0.01, 0.05, 0.2):
        expect = tpr[fpr <= target + 1e-12].max()
        assert tpr_at_fpr(pos, neg, target) == pytest.approx(expect, abs=1e-12), target


def test_tpr_at_fpr_hand_case():
    # 100 negatives 0..99, 1 % FPR admits one negative (99): tau in (98, 99].
    neg = np.arange(100.0)
    pos = np.array([98.0, 98.5, 99.0, 200.0])
    assert tpr_at_fpr(pos, neg, 0.01) == 0.75  # 98.5, 99, 200
    assert tpr_at_fpr(pos, neg, 0.0) == 0.25   # only 200 is above every negative


def test_spearman_and_welch_against_formulas():
    rng = np.random.default_rng(5)
    s = rng.normal(size=60)
    c = rng.poisson(1.0, size=60)  # ties in counts
    rho, _ = spearman(s, c)
    assert rho == pytest.approx(pearsonr(rankdata(s), rankdata(c)).statistic, abs=1e-12)
    assert all(math.isnan(v) for v in spearman(s, np.zeros(60)))  # constant counts: undefined
    a, b = rng.normal(1, 1, 30), rng.normal(0, 2, 50)
    t, p = welch_t(a, b)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    assert t == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb), rel=1e-12)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    from scipy.stats import t as student

    assert p == pytest.approx(2 * student.sf(abs(t), dof), rel=1e-10)


def test_denoising_loss_exact_oracle_and_batch_independence():
    # One training image y0 and the exact score: eps(alpha y + sigma z) = z + alpha (y - y0) / sigma,
    # so the loss is 0 for y0 and alpha^2 |y - y0|^2 / (sigma^2 D) for any other y, whatever the noise.
    g = torch.Generator().manual_seed(0)
    y0 = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    others = torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    model = ExactScore(y0)
    imgs = torch.cat([y0, others]).float()
    loss = denoising_loss(model, imgs, t=0.01, draws=3)
    tt = torch.tensor(0.01, dtype=torch.float64)
    a, s = sde.alpha(tt), sde.sigma(tt)
    expect = a**2 * (imgs.double() - y0.float().double()).pow(2).flatten(1).mean(1) / s**2
    torch.testing.assert_close(loss, expect, rtol=2e-4, atol=2e-6)
    assert loss[0] < 1e-8

    # Batch independence with a model whose loss depends on the noise.
    train = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
    m2 = ExactScore(train)
    full = denoising_loss(m2, imgs, t=0.3, draws=2, batch_size=256)
    perm = torch.tensor([4, 1, 5, 0, 3, 2])
    part = denoising_loss(m2, imgs[perm], t=0.3, draws=2, batch_size=2)
    torch.testing.assert_close(part, full[perm], rtol=1e-6, atol=1e-8)
    assert not torch.allclose(denoising_loss(m2, imgs, t=0.3, draws=2, seed=1), full)


def test_network_evaluations():
    assert network_evaluations("fd", axes=100, steps=1000) == 101_000
    assert network_evaluations("fd", axes=1, steps=1) == 2
    assert network_evaluations("jvp", axes=1, steps=1, divergence="exact", dim=64) == 66
    assert network_evaluations("fd", axes=1, steps=10, divergence="hutchinson", probes=2) == 40
    with pytest.raises(ValueError):
        network_evaluations("euler")


def test_evaluate_method_and_table():
    scores = np.r_[np.arange(10.0) + 5, np.arange(20.0)]
    labels = np.r_[np.ones(10, bool), np.zeros(20, bool)]
    counts = np.r_[np.ones(10), np.zeros(20)]
    r1 = evaluate_method("a", scores, labels, nfe=2, counts=counts)
    assert r1.auroc == pytest.approx(auroc(scores[:10], scores[10:]))
    assert r1.mean_pos == pytest.approx(9.5) and r1.mean_neg == pytest.approx(9.5)
    r2 = evaluate_method("b", -scores, labels, nfe=2)
    r3 = evaluate_method("c", scores, labels, nfe=1)
    assert best_method([r1, r2, r3]).name == "c"  # same AUROC as a, cheaper
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(method_table([r1, r2, r3], pos_label="trained", neg_label="held-out"))
    text = console.export_text()
    assert "c *" in text and "mean trained" in text
    with pytest.raises(ValueError, match="both"):
        evaluate_method("x", scores, np.ones(30, bool), nfe=1)


@pytest.mark.slow
def test_run_methods_exact_score_oracles():
    """Exact score of 6 digits with image 0 present 3 times (a perfectly memorizing model).

    * generation log p (T = 1000, exact divergence) is log p_{t_min}(y): image 0 has three
      times the mixture weight, so it scores log 3 above the others;
    * the fast volume term (N = 1, T = 1) cannot tell them apart: next to a training
      image the exact score is linear, s = (alpha y - x)/v, so one Euler step stretches
      every direction by 1 + dt beta/2 (1/v - 1), the same for all six.
    """
    from curate.evaluate import run_methods

    imgs = digits_images()[:6].double()
    model = ExactScore(torch.cat([imgs, imgs[:1].repeat(2, 1, 1, 1)]))
    specs = {
        "g": dict(method="fd", axes=1, steps=1000, divergence="exact", score="generation_logp", label="gen"),
        "fast": dict(method="fd", axes=1, steps=1),
        "den": dict(score="denoising_score", t=0.01, draws=2),
    }
    from curate.recipes._config import torch_threads

    with torch_threads(1):  # 2,000 tiny calls: one thread avoids oversubscribing a shared CPU
        out = run_methods(model, imgs, specs)
    g = out["g"].scores
    torch.testing.assert_close(g[0] - g[1:], torch.full((5,), math.log(3), dtype=torch.float64), atol=0.01, rtol=0)
    t = torch.tensor(sde.t_min, dtype=torch.float64)
    stretch = math.log(1 + sde.dt * float(sde.beta(t)) / 2 * (1 / float(sde.v(t)) - 1))
    torch.testing.assert_close(out["fast"].scores, torch.full((6,), stretch, dtype=torch.float64), rtol=1e-6, atol=0)
    assert out["g"].nfe == 2000 and out["fast"].nfe == 2 and out["den"].nfe == 2  # closed-form divergence is free
    assert out["g"].label == "gen" and "T=1000" in out["g"].settings
    with pytest.raises(ValueError, match="divergence must be one of"):  # generation log p needs div f
        run_methods(model, imgs, {"x": dict(score="generation_logp", divergence="none")})
    with pytest.raises(ValueError, match="unknown score 'nope'"):
        run_methods(model, imgs, {"x": dict(score="nope")})

