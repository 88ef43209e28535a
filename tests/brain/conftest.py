"""FiftyOne tests: a real throwaway mongod, digits written as PNGs, small datasets."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _mongod  # noqa: E402

_mongod.start()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fo():
    import fiftyone

    return fiftyone


@pytest.fixture
def foo(fo, monkeypatch):
    """fiftyone.operators, with FiftyOne finding this repository's plugin."""
    from _plugin import PLUGINS

    monkeypatch.setattr(fo.config, "plugins_dir", str(PLUGINS))
    import fiftyone.operators as foo

    return foo


@pytest.fixture
def digits_ds(fo, tmp_path, request):
    """A fresh digits dataset: 40 train + 40 test PNGs written into tmp_path."""
    from curate.data.datasets import load_digits

    import hashlib

    # unique per test and parameter (the workers share one mongod): a cut name plus a hash
    # of the whole test id, which the cut would otherwise drop for long parametrized names
    node = request.node.nodeid
    name = ("digits-" + request.node.name.replace("[", "-").replace("]", "")[:48] + "-"
            + hashlib.sha1(node.encode()).hexdigest()[:8])
    ds = load_digits(images_dir=tmp_path / "png", dataset_name=name, max_samples=40, overwrite=True,
                     progress=False)
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)

