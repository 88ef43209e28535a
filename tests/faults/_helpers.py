"""Shared pieces of the fault tests: reference scores computed without FiftyOne, and
killing a child process at a chosen moment."""
import os
import signal
import time

import torch

import curate
from curate.data.loader import load_images


def reference_scores(model, samples, **kw) -> dict:
    """{sample id: log growth} from track_volume_growth on the loader's tensors."""
    ids, images, failed = load_images(samples, num_workers=0)
    assert not failed, failed
    res = curate.track_volume_growth(model, images, dtype=torch.float64, divergence=None, **kw)
    assert not bool(res.failed.any())
    return dict(zip(ids, res.log_growth.tolist()))


def stored(samples, field="volume_growth") -> dict:
    """{sample id: value} of ``field`` (None where unset)."""
    samples._dataset.reload()
    return dict(zip(*samples.values(["id", field])))


def assert_scores_equal(got: dict, want: dict) -> None:
    """Same ids, and every value equal to float64 round-off (identical computations)."""
    assert got.keys() == want.keys()
    missing = [k for k, v in got.items() if v is None]
    assert not missing, f"{len(missing)} sample(s) not scored"
    for k, v in want.items():
        assert abs(got[k] - v) <= 1e-12 * max(1.0, abs(v)), (k, got[k], v)


def sigkill_when(child, reached, jitter: float, *, interval: float = 0.01, timeout: float = 120.0) -> bool:
    """Wait until ``reached()`` (or ``child`` exits, or ``timeout`` s), sleep ``jitter`` s more,
    then SIGKILL ``child`` if it still runs. Returns whether it was killed; a child that
    finished on its own must have exited cleanly."""
    deadline = time.time() + timeout
    while time.time() < deadline and child.poll() is None and not reached():
        time.sleep(interval)
    time.sleep(jitter)
    killed = child.poll() is None
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    _, err = child.communicate()
    assert killed or child.returncode == 0, (err or "")[-3000:]
    return killed
