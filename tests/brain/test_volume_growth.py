"""compute_volume_growth against a real mongod: exact values, the run record, resume, failures."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import curate
from curate.brain import compute_volume_growth, list_runs
from curate.data.loader import load_images

HERE = Path(__file__).parent


def _reference(model, samples, **kw):
    """track_volume_growth on the loader's tensors of ``samples``: {id: score}."""
    ids, images, failed = load_images(samples, num_workers=0)
    assert not failed
    res = curate.track_volume_growth(model, images, dtype=torch.float64, divergence=None, **kw)
    return dict(zip(ids, res.log_growth.tolist()))


def _stored(samples, field="volume_growth"):
    return dict(zip(*samples.values(["id", field])))


def test_scores_equal_tracker_and_run_record(digits_ds, train_model):
    ds = digits_ds
    s = compute_volume_growth(ds, train_model, axes=2, steps=3, batch_size=16, progress=False)
    assert (s.scored, s.failed, s.skipped, s.resumed) == (80, 0, 0, False)
    want = _reference(train_model, ds, axes=2, steps=3)
    got = _stored(ds)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12, atol=1e-12)
    # Held-out (test) images are not all equal to the training ones: the check is not vacuous.
    assert np.ptp(list(got.values())) > 1e-3

    assert ds.list_brain_runs() == ["volume_growth"] and list_runs(ds) == ["volume_growth"]
    cfg = ds.get_brain_info("volume_growth").config
    assert (cfg.tracker_method, cfg.axes, cfg.steps, cfg.sigma, cfg.seed) == ("fd", 2, 3, 0.05, 0)
    assert cfg.model == "curate.models.exact.ExactScore" and "n=40" in cfg.model_description
    assert cfg.image_size == [8, 8] and cfg.image_channels == 1
    assert cfg.versions["torch"] == torch.__version__ and cfg.versions["curate"] == curate.__version__
    res = ds.load_brain_results("volume_growth")
    assert (res.scored, res.failed) == (80, 0)

    ds.delete_brain_run("volume_growth")
    schema = ds.get_field_schema()
    assert "volume_growth" not in schema and "volume_growth_error" not in schema
    assert ds.list_brain_runs() == []


@pytest.mark.parametrize("score, divergence", [("divergence", "exact"), ("divergence", "hutchinson"),
                                               ("generation_logp", "exact")])
def test_divergence_and_logp_scores_equal_tracker(digits_ds, train_model, score, divergence):
    ds = digits_ds
    # From t = 0.05 the images' neighbourhoods differ (at 1e-3 each sits on a sharp peak).
    compute_volume_growth(ds, train_model, score_field="s", score=score, divergence=divergence, probes=2,
                          steps=4, t_min=0.05, batch_size=32, progress=False)
    ids, images, _ = load_images(ds, num_workers=0)
    res = curate.track_volume_growth(train_model, images, steps=4, t_min=0.05, divergence=divergence,
                                     probes=2, dtype=torch.float64)
    want = dict(zip(ids, (res.divergence_integral if score == "divergence" else res.generation_logp).tolist()))
    got = _stored(ds, "s")
    np.testing.assert_allclose([got[k] for k in ids], [want[k] for k in ids], rtol=1e-12)
    assert np.ptp(list(got.values())) > 1e-3
    cfg = ds.get_brain_info("s").config
    assert (cfg.score, cfg.divergence) == (score, divergence)
    # Another score kind into the same field is another run's results: refused.
    other = "generation_logp" if score == "divergence" else "divergence"
    with pytest.raises(ValueError):
        compute_volume_growth(ds, train_model, score_field="s", score=other, divergence=divergence,
                              probes=2, steps=4, t_min=0.05, progress=False)
    with pytest.raises(ValueError, match="score must be one of"):
        compute_volume_growth(ds, train_model, score_field="t", score="loss", progress=False)


def test_other_runs_results_are_protected(digits_ds, train_model):
    ds = digits_ds
    compute_volume_growth(ds, train_model, steps=2, progress=False)
    before = _stored(ds)
    with pytest.raises(ValueError, match="other settings.*sigma"):
        compute_volume_growth(ds, train_model, steps=2, sigma=0.1, progress=False)
    assert _stored(ds) == before  # nothing lost
    s = compute_volume_growth(ds, train_model, steps=2, progress=False)  # same settings: all done
    assert (s.scored, s.skipped, s.resumed) == (0, 80, True)
    with pytest.raises(ValueError, match="resume=False"):
        compute_volume_growth(ds, train_model, steps=2, resume=False, progress=False)
    s = compute_volume_growth(ds, train_model, steps=2, sigma=0.1, overwrite=True, progress=False)
    assert s.scored == 80
    want = _reference(train_model, ds, steps=2, sigma=0.1)
    got = _stored(ds)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12, atol=1e-12)
    assert ds.get_brain_info("volume_growth").config.sigma == 0.1
    # A field some user wrote is not silently replaced either.
    ds.set_values("mine", [1.0] * ds.count())
    with pytest.raises(ValueError, match="no curate scoring run wrote"):
        compute_volume_growth(ds, train_model, score_field="mine", progress=False)
    assert ds.values("mine") == [1.0] * 80
    with pytest.raises(ValueError, match="identifier"):
        compute_volume_growth(ds, train_model, score_field="a.b", progress=False)


def test_unreadable_image_is_a_per_sample_failure(digits_ds, train_model):
    ds = digits_ds
    bad = ds.match_tags("test").skip(3).first()
    Path(bad.filepath).write_bytes(b"\x89PNG truncated")
    s = compute_volume_growth(ds, train_model, batch_size=8, progress=False)
    assert (s.scored, s.failed) == (79, 1)
    bad.reload()
    assert bad.volume_growth is None and "UnidentifiedImageError" in bad.volume_growth_error
    good = ds.exists("volume_growth")
    want = _reference(train_model, good)
    got = _stored(good)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12, atol=1e-12)
    assert ds.exists("volume_growth_error").count() == 1


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(fo, tmp_path, train_model, digits_ds):
    ds = digits_ds
    ds.persistent = True  # the child processes open it by name
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(HERE / "_score_child.py"), ds.name]
    child = subprocess.Popen(cmd + ["0.05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few batches are in, well before the end
        ds.reload()  # the child adds the field
        if "volume_growth" in ds.get_field_schema() and ds.exists("volume_growth").count() >= 12:
            break
        if child.poll() is not None:
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    ds.reload()
    done_before = _stored(ds.exists("volume_growth"))
    assert 12 <= len(done_before) < 80

    out = subprocess.run(cmd + ["0"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ds.reload()
    summary = json.loads(out.stdout.split("SUMMARY ", 1)[1])
    # The second process scored exactly the samples the first had not finished.
    assert summary["skipped"] == len(done_before) and summary["resumed"]
    assert summary["scored"] == 80 - len(done_before) and summary["failed"] == 0
    got = _stored(ds)
    assert all(got[k] == v for k, v in done_before.items())  # untouched
    assert None not in got.values()
    want = _reference(train_model, ds, steps=2)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12, atol=1e-12)
    # Identical to one uninterrupted run (same model class, fresh field).
    ds.persistent = False
