"""Shared checks of the fault tests: reference scores computed without FiftyOne."""
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
