"""compute_denoising_score against a real mongod, checked against closed forms.

With ExactScore over ONE image y0 the posterior mean is y0 for every x, so
eps(x, t) = (x - alpha y0) / sigma exactly, and for x = alpha y + sigma z:

    eps - z = alpha (y - y0) / sigma   =>   L(y) = (alpha / sigma)^2 mean((y - y0)^2),

whatever the noise draws. The expected values below are computed from the PNG
files with PIL and the schedule's formula, not with curate's code.
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from curate.brain import compute_denoising_score, compute_volume_growth, list_runs
from curate.models.exact import ExactScore


def _pixels(path) -> np.ndarray:
    """(1, 8, 8) float64 in [-1, 1] read with PIL."""
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)[None] / 127.5 - 1.0


def _alpha_sigma(t):
    m = 0.5 * t * 0.1 + 0.25 * t * t * (20.0 - 0.1)  # VP schedule, beta in [0.1, 20]
    a = math.exp(-m)
    return a, math.sqrt(1.0 - a * a)


def _stored(samples, field):
    return dict(zip(*samples.values(["id", field])))


@pytest.mark.parametrize("t", [0.01, 0.1])
def test_equals_closed_form_for_a_one_image_model(digits_ds, t):
    ds = digits_ds
    ref = ds.match_tags("train").first()
    y0 = _pixels(ref.filepath)
    model = ExactScore(torch.from_numpy(y0[None]))
    s = compute_denoising_score(ds, model, t=t, draws=3, batch_size=16, progress=False)
    assert (s.scored, s.failed, s.skipped) == (80, 0, 0)
    a, sg = _alpha_sigma(t)
    paths = dict(zip(*ds.values(["id", "filepath"])))
    want = {k: -(a / sg) ** 2 * np.mean((_pixels(p) - y0) ** 2) for k, p in paths.items()}
    got = _stored(ds, "denoising_score")
    # float32 network inputs: errors of order 1e-6 relative, 1e-9 absolute near 0.
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-4, atol=1e-8)
    assert got[ref.id] == pytest.approx(0.0, abs=1e-8) and max(got.values()) == got[ref.id]
    assert np.ptp(list(got.values())) > 1.0  # the check is not vacuous


def test_training_images_rank_first_and_run_record(digits_ds, train_model):
    """ExactScore reproduces its training images: every one scores above every held-out image."""
    ds = digits_ds
    compute_denoising_score(ds, train_model, score_field="dn", batch_size=32, progress=False)
    train = ds.match_tags("train").values("dn")
    test = ds.match_tags("test").values("dn")
    assert min(train) > max(test)
    cfg = ds.get_brain_info("dn").config
    assert (cfg.method, cfg.t, cfg.draws, cfg.seed, cfg.image_size) == ("curate_denoising_score", 0.01, 4, 0,
                                                                         [8, 8])
    assert ds.load_brain_results("dn").scored == 80
    # Sortable like any score, and listed with the volume-growth runs.
    compute_volume_growth(ds, train_model, steps=1, progress=False)
    assert list_runs(ds) == ["dn", "volume_growth"]
    top = ds.sort_by("dn", reverse=True).limit(40)
    assert set(top.values("id")) == set(ds.match_tags("train").values("id"))

    # Resume: nothing left to do; other settings into the same field: refused, nothing lost.
    before = _stored(ds, "dn")
    s = compute_denoising_score(ds, train_model, score_field="dn", batch_size=32, progress=False)
    assert (s.scored, s.skipped, s.resumed) == (0, 80, True)
    with pytest.raises(ValueError, match="other settings.*'t'"):
        compute_denoising_score(ds, train_model, score_field="dn", t=0.05, progress=False)
    with pytest.raises(ValueError, match="another brain run"):
        compute_denoising_score(ds, train_model, score_field="volume_growth", progress=False)
    assert _stored(ds, "dn") == before
    ds.delete_brain_run("dn")
    assert "dn" not in ds.get_field_schema() and "dn_error" not in ds.get_field_schema()


def test_scores_do_not_depend_on_batching(digits_ds, train_model):
    ds = digits_ds
    compute_denoising_score(ds, train_model, score_field="a", batch_size=7, progress=False)
    compute_denoising_score(ds.sort_by("filepath", reverse=True), train_model, score_field="b",
                            batch_size=80, progress=False)
    a, b = _stored(ds, "a"), _stored(ds, "b")
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-6)


class _NanOnDark:
    """eps of a one-image ExactScore, NaN for images darker than ``limit`` on average."""

    def __init__(self, inner, limit):
        self.inner, self.limit = inner, limit

    def eps(self, x, t):
        e = self.inner.eps(x, t)
        dark = x.flatten(1).mean(1) < self.limit
        return torch.where(dark.reshape(-1, 1, 1, 1), torch.full_like(e, float("nan")), e)


def test_bad_input_is_refused_or_marked(digits_ds, train_model):
    ds = digits_ds
    for kw, msg in [(dict(t=0.0), r"t must lie in \(0, 1\]"), (dict(t=2.0), r"t must lie in \(0, 1\]"), (dict(draws=0), "draws"),
                    (dict(batch_size=0), "batch_size"), (dict(score_field="a.b"), "identifier")]:
        with pytest.raises(ValueError, match=msg):
            compute_denoising_score(ds, train_model, progress=False, **kw)
    assert "denoising_score" not in ds.get_field_schema()  # nothing written
    with pytest.raises(TypeError, match="eps"):
        compute_denoising_score(ds, object(), progress=False)
    with pytest.raises(ValueError, match="NaN/Inf on a blank image"):
        compute_denoising_score(ds, _NanOnDark(train_model, 2.0), progress=False)

    # NaN on some images: those get an error message, every other image its score.
    means = {k: float(np.mean(_pixels(p))) for k, p in zip(*ds.values(["id", "filepath"]))}
    limit = float(np.median(list(means.values())))
    s = compute_denoising_score(ds, _NanOnDark(train_model, limit), score_field="n", batch_size=16,
                                progress=False)
    n_bad = sum(m < limit - 0.02 for m in means.values())
    assert s.failed >= n_bad > 0 and s.scored + s.failed == 80
    errs = ds.exists("n_error")
    assert all("not finite" in e for e in errs.values("n_error"))
    assert all(v is not None and math.isfinite(v) for v in ds.exists("n").values("n"))
