"""FAISS key search against the exact chunked search (a second, independent computation)
on real descriptor keys of synthetic photos and their edited copies."""
import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss-cpu is an optional extra (pip install 'curate[faiss]')")

from curate.duplicates import Descriptor  # noqa: E402
from curate.duplicates import edits as E  # noqa: E402
from curate.duplicates.key_index import FaissKeys, default_nlist  # noqa: E402
from curate.duplicates.search import KeySearch  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    photos = E.natural_like(600, seed=3)
    d = Descriptor()
    kk, cc = d.describe(photos.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    return kk, d.mirror_permutation(cc.shape[1])


@pytest.mark.parametrize("mirror", [False, True])
def test_flat_faiss_finds_the_exact_neighbours(keys, mirror):
    kk, perm = keys
    perm = perm if mirror else None
    rows = np.arange(0, 600, 7)
    exact = KeySearch(kk, perm, index="exact").neighbours(rows, 10)
    flat = KeySearch(kk, perm, index="faiss").neighbours(rows, 10)
    # the same neighbour sets (ties in float32 may swap neighbours of equal similarity)
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, flat)])
    assert same >= 0.99 and (exact[:, 0] == flat[:, 0]).mean() >= 0.98
    assert all(r not in row for r, row in zip(rows, flat))  # never its own neighbour


def test_ivf_recall_grows_with_the_cells_probed(keys):
    kk, perm = keys
    rows = np.arange(600)
    exact = KeySearch(kk, perm, index="exact").neighbours(rows, 10)

    def recall(nprobe):
        got = FaissKeys(kk, perm, approximate=True, nlist=16, nprobe=nprobe).neighbours(rows, 10)
        assert got.shape == (600, 10) and (got >= 0).all() and (got < 600).all()
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got)])

    low, full = recall(1), recall(16)
    assert full >= 0.99  # every cell probed: exact up to ties
    assert low < full


def test_auto_is_exact_below_the_limit(keys):
    kk, perm = keys
    assert KeySearch(kk, perm, index="auto").index == "exact"
    assert default_nlist(1_000_000) == 1000 and default_nlist(100) == 2
