"""Shared test set-up: deterministic, quiet, and never touching a user's FiftyOne data."""
import os
import tempfile

# Before anything imports fiftyone: no analytics, and a throwaway database directory
# (tests/brain/conftest.py may point FiftyOne at its own mongod instead).
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="curate-test-fodb-"))
# One intra-op thread, here and in the processes tests start (torchrun, killed children):
# the tests' networks are small, and two OpenMP threads per process spin against each other
# on a 2-core machine once a second process runs (measured: up to 25x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def digits64():
    """scikit-learn's real digits, (1797, 1, 8, 8) float64 in [-1, 1]."""
    from curate.data.tensors import digits_images

    return digits_images(dtype=torch.float64)


@pytest.fixture
def train_model(digits_ds):
    """ExactScore (float64) of the training images of the ``digits_ds`` FiftyOne dataset that
    tests/brain and tests/faults each define, read by the loader."""
    from curate.data.loader import load_images
    from curate.models.exact import ExactScore

    _, images, failed = load_images(digits_ds.match_tags("train"), num_workers=0)
    assert not failed
    return ExactScore(images.to(torch.float64))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``heavy`` (minutes of CPU) run first: with ``-n 2`` they overlap the
    rest instead of running alone at the end (measured: the memorization test alone
    added 12 minutes at the end of a run)."""
    def minutes(item):
        m = item.get_closest_marker("heavy")
        return -m.kwargs.get("minutes", 1) if m else 0

    items.sort(key=minutes)  # longest first; stable: the order is kept otherwise
