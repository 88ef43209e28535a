"""SIGKILL a scoring process at random points, then resume: nothing lost, nothing redone."""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _helpers import assert_scores_equal, reference_scores, sigkill_when, stored
from _score import SlowExactScore

HERE = Path(__file__).parent
N = 40


def _modified(ds) -> dict:
    """{id: last_modified_at} of the scored samples (a rewrite would change it)."""
    ds.reload()
    view = ds.exists("volume_growth")
    return dict(zip(*view.values(["id", "last_modified_at"])))


def _kill_at_random_point(ds, env, rng, done: int) -> tuple[int, bool]:
    """Start a scoring child; SIGKILL it once ``k`` samples (random, ``done`` <= k < N)
    are stored, after a random extra delay. Returns (samples stored, whether killed)."""
    k = done + rng.randrange(0, max(1, (N - done) // 2))
    jitter = rng.uniform(0.0, 0.3)
    child = subprocess.Popen([sys.executable, str(HERE / "_score.py"), ds.name, "--delay", "0.02"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "STARTED", child.stderr.read()[-3000:]

    def reached():
        ds.reload()
        return k == done or ("volume_growth" in ds.get_field_schema() and ds.exists("volume_growth").count() >= k)

    killed = sigkill_when(child, reached, jitter, interval=0.02)
    ds.reload()
    n = ds.exists("volume_growth").count() if "volume_growth" in ds.get_field_schema() else 0
    return n, killed


@pytest.mark.slow
def test_sigkill_scoring_at_random_points_then_resume(digits_ds, train_model, child_env):
    ds = digits_ds
    want = reference_scores(train_model, ds, steps=2)
    before, history = {}, []
    for seed in (11, 22, 33):
        n, killed = _kill_at_random_point(ds, child_env, random.Random(seed), len(before))
        history.append((seed, n, killed))
        now = _modified(ds)
        # What an earlier process saved is still there and was never rewritten.
        assert all(now.get(k) == v for k, v in before.items()), history
        # Every stored value is complete and right (no half-written or wrong score).
        got = {k: v for k, v in stored(ds).items() if v is not None}
        assert_scores_equal(got, {k: want[k] for k in got})
        assert ds.exists("volume_growth_error").count() == 0 if "volume_growth_error" in ds.get_field_schema() else True
        before = now
    print("KILL HISTORY", history)
    assert any(killed and 0 < n < N for _, n, killed in history), history  # a real mid-run kill

    # Resume in this process with the same settings (same model class and weights).
    _, train, _ = __import__("curate.data.loader", fromlist=["x"]).load_images(
        ds.match_tags("train"), num_workers=0)
    from curate.brain import compute_volume_growth

    model = SlowExactScore(train.to(torch.float64))
    done = len(before)
    s = compute_volume_growth(ds, model, steps=2, batch_size=2, num_workers=0, progress=False)
    assert (s.scored, s.failed, s.skipped) == (N - done, 0, done), history
    assert s.resumed == (ds.list_brain_runs() == ["volume_growth"])
    assert all(_modified(ds)[k] == v for k, v in before.items())  # the done ones untouched
    assert_scores_equal(stored(ds), want)  # identical to one uninterrupted computation
    assert ds.list_brain_runs() == ["volume_growth"]
    res = ds.load_brain_results("volume_growth")
    assert (res.scored, res.failed) == (N, 0)


def test_lock_left_by_a_killed_process_is_taken_over(digits_ds, fo):
    import fiftyone.core.odm as foo

    from curate.brain._lock import COLLECTION, dataset_lock

    ds = digits_ds
    coll = foo.get_db_conn()[COLLECTION]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    key = f"dataset:{ds._doc.id}"
    import datetime as dt

    coll.insert_one({"_id": key, "token": "x", "host": __import__("socket").gethostname(),
                     "pid": dead.pid, "at": dt.datetime.utcnow()})
    with dataset_lock(ds, timeout_s=0):  # taken over at once: a wait would raise TimeoutError
        assert coll.find_one({"_id": key})["pid"] == os.getpid()
    assert coll.find_one({"_id": key}) is None
    # A live holder: wait, then a clear error naming the holder and how to clear it.
    coll.insert_one({"_id": key, "token": "y", "host": __import__("socket").gethostname(),
                     "pid": os.getppid(), "at": dt.datetime.utcnow()})
    try:
        with dataset_lock(ds, timeout_s=0.3):
            raise AssertionError("lock taken from a live holder")
    except TimeoutError as e:
        assert f"process {os.getppid()}" in str(e) and COLLECTION in str(e)
    finally:
        coll.delete_one({"_id": key})
