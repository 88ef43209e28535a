"""Shared test set-up: deterministic, quiet, and never touching a user's FiftyOne data."""
import os
import tempfile

# Before anything imports fiftyone: no analytics, and a throwaway database directory
# (tests/brain/conftest.py may point FiftyOne at its own mongod instead).
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="curate-test-fodb-"))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def digits64():
    """scikit-learn's real digits, (1797, 1, 8, 8) float64 in [-1, 1]."""
    from curate.data.tensors import digits_images

    return digits_images(dtype=torch.float64)
