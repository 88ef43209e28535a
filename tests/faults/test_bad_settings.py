"""Bad models and settings: a clear error before anything is written, or a stated recovery."""
import pytest
import torch

import curate
from curate.brain import compute_volume_growth
from curate.data.loader import load_images

from _helpers import assert_scores_equal, reference_scores, stored


def _state(ds):
    """Everything a refused call must leave as it was."""
    ds.reload()
    schema = sorted(ds.get_field_schema())
    return schema, ds.list_brain_runs(), {f: ds.values(f) for f in schema if f not in ("last_modified_at",)}


class Poisoned:
    """ExactScore whose network output is NaN for images whose mean lies in a band
    (and +Inf everywhere when ``everywhere``): a model that fails on some inputs."""

    def __init__(self, inner, everywhere=False):
        self.inner, self.everywhere = inner, everywhere

    def eps(self, x, t):
        out = self.inner.eps(x, t)
        if self.everywhere:
            return torch.full_like(out, float("inf"))
        m = x.flatten(1).mean(1)
        bright = (m > -0.35) & (m < -0.05)  # some digits; never the blank probe (0)
        return torch.where(bright[:, None, None, None], torch.full_like(out, float("nan")), out)


def test_nan_from_the_network_fails_those_samples_only(digits_ds, train_model):
    ds = digits_ds
    model = Poisoned(train_model)
    s = compute_volume_growth(ds, model, steps=2, batch_size=8, progress=False)
    ids, images, _ = load_images(ds, num_workers=0)
    res = curate.track_volume_growth(model, images, steps=2, dtype=torch.float64, divergence=None,
                                     on_error="mark")
    bad = {i for i, f in zip(ids, res.failed.tolist()) if f}
    assert 0 < len(bad) < len(ids)  # the check is not vacuous
    assert (s.scored, s.failed) == (len(ids) - len(bad), len(bad))
    errors = dict(zip(*ds.values(["id", "volume_growth_error"])))
    assert {k for k, v in errors.items() if v} == bad
    assert all("tracker:" in errors[k] and ("NaN" in errors[k] or "non-finite" in errors[k]) for k in bad)
    good = {k: v for k, v in stored(ds).items() if k not in bad}
    want = reference_scores(train_model, ds.select(list(good)), steps=2)
    assert_scores_equal(good, want)  # the poisoned model equals the exact one there


def test_model_that_is_all_inf_or_crashes_is_refused_before_work(digits_ds, train_model):
    ds = digits_ds
    before = _state(ds)
    with pytest.raises(ValueError, match="NaN/Inf on a blank image"):
        compute_volume_growth(ds, Poisoned(train_model, everywhere=True), progress=False)

    class Crashes:
        def eps(self, x, t):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(ValueError, match="failed on a blank .* image before any scoring.*mat1"):
        compute_volume_growth(ds, Crashes(), progress=False)
    assert _state(ds) == before


def test_checkpoint_for_another_image_size_or_channels(digits_ds, tmp_path):
    from curate.models.checkpoint import load_model, save_checkpoint
    from curate.models.unet import build_unet

    ds = digits_ds
    before = _state(ds)
    for size, channels in ((8, 3), (16, 1), (32, 3)):
        folder = save_checkpoint(tmp_path / f"unet{size}x{channels}",
                                 build_unet("tiny", image_size=size, channels=channels))
        model = load_model(folder, device="cpu")
        with pytest.raises(ValueError, match=rf"built for images of {channels} channel\(s\), "
                                             rf"{size}x{size}.*1 channel\(s\), 8x8"):
            compute_volume_growth(ds, model, progress=False)
    assert _state(ds) == before
    # The matching checkpoint is accepted (and its scores are finite).
    ok = load_model(save_checkpoint(tmp_path / "ok", build_unet("tiny", image_size=8, channels=1)),
                    device="cpu")
    s = compute_volume_growth(ds.limit(4), ok, progress=False, dtype=torch.float32)
    assert (s.scored, s.failed) == (4, 0)


@pytest.mark.parametrize("kw, message", [
    (dict(axes=65), "axes must be an integer in 1..D = 64"),
    (dict(axes=0), "axes must be"),
    (dict(sigma=0.0), "sigma must be a positive"),
    (dict(sigma=-0.05), "sigma must be a positive"),
    (dict(sigma=float("nan")), "sigma must be a positive"),
    (dict(steps=0), "steps must be an integer in 1..1000"),
    (dict(steps=1001), "steps must be an integer in 1..1000"),
    (dict(steps=2.5), "steps must be an integer"),
    (dict(t_min=0.0), "t_min must lie in"),
    (dict(method="rk4"), "method must be one of"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(channels=2), "channels must be 1, 3 or None"),
])
def test_bad_settings_refused_before_any_write(digits_ds, train_model, kw, message):
    ds = digits_ds
    before = _state(ds)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compute_volume_growth(ds, train_model, progress=False, **kw)
    assert _state(ds) == before


def test_empty_view_is_refused(digits_ds, train_model):
    ds = digits_ds
    before = _state(ds)
    with pytest.raises(ValueError, match="empty"):
        compute_volume_growth(ds.match_tags("no-such-tag"), train_model, progress=False)
    assert _state(ds) == before


def test_fields_of_other_runs_and_builtin_fields_are_protected(digits_ds, train_model):
    ds = digits_ds
    compute_volume_growth(ds, train_model, steps=2, logp_field="vg_logp", progress=False)
    before = _state(ds)
    attempts = [
        (dict(steps=3), "other settings"),  # same field, other settings
        (dict(score_field="vg_logp"), "belongs to the brain run 'volume_growth'"),
        (dict(score_field="other", logp_field="volume_growth"), "belongs to the brain run"),
        (dict(score_field="volume_growth_error"), "belongs to the brain run"),
        (dict(score_field="ground_truth"), "no curate scoring run wrote"),
        (dict(score_field="other", logp_field="other"), "collides"),
    ]
    for kw, message in attempts:
        with pytest.raises(ValueError, match=message):
            compute_volume_growth(ds, train_model, progress=False, **kw)
        assert _state(ds) == before, kw
    # Built-in fields and names that are not identifiers, even with overwrite=True.
    for name in ("filepath", "tags", "id", "metadata", "a.b", "$where", "", "a b", "_private", "x-y"):
        with pytest.raises(ValueError, match="built-in|identifier"):
            compute_volume_growth(ds, train_model, score_field=name, overwrite=True, progress=False)
    assert _state(ds) == before
