"""The paper's two experiments as recipes, end to end on their smoke presets."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from curate.recipes import _config, memorized_vs_not, overfit_check

pytestmark = pytest.mark.slow


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _check_rows_against_saved_scores(run_dir, result, positive):
    """Every AUROC in results.json equals sklearn's on the saved per-image scores."""
    for name, spec in tomllib.loads((run_dir / "config.toml").read_text())["methods"].items():
        s = load_file(str(run_dir / f"scores_{name}.safetensors"))["score"].numpy()
        row = next(r for r in result["methods"] if r["name"] == spec["label"])
        keep = ~np.isnan(s)
        if np.unique(s[keep]).size > 1:
            assert row["auroc"] == pytest.approx(roc_auc_score(positive[keep], s[keep]), abs=1e-12), name
        assert row["mean_pos"] == pytest.approx(float(np.nanmean(s[positive])), rel=1e-9, abs=1e-12)
        _png(run_dir / "figures" / f"hist_{name}.png")


def test_overfit_check_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "oc"
    result = overfit_check.main(["--config", "smoke", "--out", str(out)])
    text = capsys.readouterr().out
    assert "trained vs held-out" in text and "best method:" in text
    data = load_file(str(out / "data.safetensors"))
    train, held = data["train"], data["heldout"]
    assert train.shape == (16, 1, 8, 8) and held.shape == (16, 1, 8, 8)
    torch.testing.assert_close(train[8:], train[:8].flip(-1))  # flips of the 8 chosen digits
    assert not set(data["train_idx"].tolist()) & set(data["heldout_idx"].tolist())
    positive = np.r_[np.ones(16, bool), np.zeros(16, bool)]
    _check_rows_against_saved_scores(out, result, positive)
    assert json.loads((out / "results.json").read_text())["best"] == result["best"]
    for f in ("sweep_axes.png", "sweep_steps.png"):
        _png(out / "figures" / f)
    best_key = next(k for k, v in tomllib.loads((out / "config.toml").read_text())["methods"].items()
                    if v["label"] == result["best"]["name"])
    _png(out / "figures" / f"{best_key}_highest.png")
    # The memorization check ran against the training set with 16 samples.
    assert result["memorization"]["n_samples"] == 16
    # The steps sweep at T equals the curve's column T of the saved curve.
    curve = load_file(str(out / "scores_trajectory.safetensors"))["curve"].numpy()
    for row in result["sweeps"]["steps"]:
        c = curve[:, row["T"] - 1]
        assert row["auroc"] == pytest.approx(roc_auc_score(positive, c), abs=1e-12)

    # A rerun resumes: every stage is skipped and the answer is the same.
    again = overfit_check.main(["--config", "smoke", "--out", str(out)])
    text = capsys.readouterr().out
    assert "running" not in text and text.count("skipped") >= 9
    assert again["methods"] == result["methods"]
    # A different config in the same folder is refused.
    with pytest.raises(SystemExit, match="different config"):
        overfit_check.main(["--config", "smoke", "--out", str(out), "--set", "seed=1"])


def test_memorized_vs_not_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "mvn"
    result = memorized_vs_not.main(["--config", "smoke", "--out", str(out)])
    text = capsys.readouterr().out
    assert "memorized vs not" in text and "planted duplicates" in text
    data = load_file(str(out / "data.safetensors"))
    unique, train = data["unique"], data["train"]
    assert unique.shape[0] == 32 and train.shape[0] == 32 + 2 * 7
    # Ground truth recomputed independently: Carlini's criterion from cdist over the unique set.
    samples = load_file(str(out / "samples.safetensors"))["samples"].double()
    d = torch.cdist(samples.flatten(1), unique.double().flatten(1))
    ds, di = d.sort(1)
    mem = ds[:, 0] / (0.5 * ds[:, :50].mean(1)) < 1
    counts = torch.bincount(di[:, 0][mem], minlength=32)
    positive = (counts >= 1).numpy()
    assert result["n_memorized"] == int(positive.sum())
    # The planted images (8 copies each) are reproduced most often by the exact score.
    assert counts[:2].min() >= counts[2:].max()
    _check_rows_against_saved_scores(out, result, positive)
    for name, pr in result["planted"].items():
        s = load_file(str(out / f"scores_{name}.safetensors"))["score"]
        order = torch.argsort(torch.nan_to_num(s, nan=-torch.inf), descending=True, stable=True).tolist()
        assert pr["ranks"] == [order.index(i) for i in range(2)]
    row = next(r for r in result["methods"] if r["name"] == "fast (N=1, T=1)")
    from scipy.stats import spearmanr

    s = load_file(str(out / "scores_fast.safetensors"))["score"].numpy()
    assert row["spearman"] == pytest.approx(spearmanr(s, counts.numpy()).statistic, abs=1e-12)
    # The noise ceiling, recomputed from the same cdist: even samples against odd ones.
    ca, cb = (torch.bincount(di[h::2, 0][mem[h::2]], minlength=32).numpy() for h in (0, 1))
    ceiling = result["noise_ceiling"]
    assert (ceiling["positives_a"], ceiling["positives_b"]) == (int((ca >= 1).sum()), int((cb >= 1).sum()))
    want = (roc_auc_score(cb >= 1, ca) + roc_auc_score(ca >= 1, cb)) / 2
    assert ceiling["auroc"] == pytest.approx(want, abs=1e-12)
    assert ceiling["spearman"] == pytest.approx(spearmanr(ca, cb).statistic, abs=1e-12)
    fast = result["against_ceiling"]["fast (N=1, T=1)"]
    assert fast["auroc"] == pytest.approx((roc_auc_score(cb >= 1, s) + roc_auc_score(ca >= 1, s)) / 2, abs=1e-12)
    assert fast["fraction_of_ceiling"] == pytest.approx(fast["auroc"] / want, abs=1e-12)


def test_presets_resolve_and_dry_run(capsys):
    for recipe, mod in (("overfit_check", overfit_check), ("memorized_vs_not", memorized_vs_not)):
        assert {"digits", "smoke"} <= set(_config.available_presets(recipe))
        for preset in _config.available_presets(recipe):
            cfg = _config.load_preset(recipe, preset)
            assert cfg["methods"] and cfg["model"]["source"] in ("train", "exact")
        assert mod.main(["--config", "digits", "--dry-run", "--set", "seed=5"]) is None
        assert tomllib.loads(capsys.readouterr().out)["seed"] == 5
