"""Fault-injection tests: a real throwaway mongod (shared with tests/brain), real files.

Child processes (killed, sharded, run side by side) reach the same mongod through
FIFTYONE_DATABASE_URI, which ``_mongod.start()`` sets before fiftyone is imported.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "brain"))
sys.path.insert(0, str(HERE))
import _mongod  # noqa: E402

_mongod.start()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fo():
    import fiftyone

    return fiftyone


@pytest.fixture
def child_env():
    """Environment for child processes: this mongod, quiet, the helpers importable."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    # One thread per child: two cores shared by several processes (OpenMP spin-waits otherwise).
    return dict(os.environ, PYTHONPATH=path, FIFTYONE_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1",
                OMP_NUM_THREADS="1")


@pytest.fixture
def digits_ds(fo, tmp_path, request):
    """A fresh persistent digits dataset (20 train + 20 test PNGs) other processes can open."""
    from curate.data.datasets import load_digits

    name = "faults-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    ds = load_digits(images_dir=tmp_path / "png", dataset_name=name, max_samples=20, overwrite=True,
                     progress=False, persistent=True)
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)

