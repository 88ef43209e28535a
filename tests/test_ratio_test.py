"""The descriptor's ratio test (curate.duplicates.search, step 5): checked against a second,
brute-force computation from the full matrix of exact aligned distances."""
import numpy as np
import pytest

from curate.duplicates import Aligner, Descriptor, find_pairs
from curate.duplicates import edits as E
from curate.duplicates.choices import DEFAULT_RATIO, RATIO_RANK, RATIO_REACH
from curate.duplicates.search import local_background
from curate.duplicates.verify import PairVerifier


def _model_range(u8: np.ndarray) -> np.ndarray:
    return u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1


@pytest.fixture(scope="module")
def collection():
    """20 synthetic photos, a series of 14 realistic copies of photo 0 (a crowd: its
    images' 10th nearest neighbour is close, so the ratio test refuses some of its pairs)
    and one copy each of photos 1-4 (alone: the test accepts them), so that pairs fall
    below the threshold, in the ratio band (both ways) and beyond it."""
    photos = E.natural_like(20, seed=3)
    rng = np.random.default_rng(0)
    copies = [E.apply_real(photos[0], E.draw_real(rng)) for _ in range(14)]
    copies += [E.apply_real(photos[i], E.draw_real(rng)) for i in range(1, 5)]
    u8 = np.concatenate([photos, np.stack(copies)])
    d = Descriptor()
    keys, canvases = d.describe(_model_range(u8))
    n = len(u8)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    exact = PairVerifier(Aligner(), canvases, True, refine_below=np.inf).distances(pairs)
    D = np.full((n, n), np.inf)
    D[pairs[:, 0], pairs[:, 1]] = D[pairs[:, 1], pairs[:, 0]] = exact
    return keys, canvases, D, d


def _brute(D: np.ndarray, queries, t: float, ratio, reach: float, rank: int) -> set:
    """Every pair touching a query: d <= t, or t < d <= reach t and d <= ratio x the mean
    of both images' rank-th smallest distance to the others (the partner left out)."""
    n = len(D)
    out = set()
    for a in range(n):
        for b in range(a + 1, n):
            if a not in queries and b not in queries:
                continue
            d = D[a, b]
            if d <= t:
                out.add((a, b))
            elif ratio is not None and d <= reach * t:
                bg = []
                for i, j in ((a, b), (b, a)):
                    others = np.sort([D[i, m] for m in range(n) if m not in (i, j)])
                    bg.append(others[min(rank, len(others)) - 1])
                if d <= ratio * np.mean(bg):
                    out.add((a, b))
    return out


@pytest.mark.parametrize("t", [0.05, 0.08, 0.2])
def test_every_pair_decision_matches_brute_force(collection, t):
    keys, canvases, D, d = collection
    n = len(keys)
    # k = n - 1 makes every image a candidate of every other; a huge refine makes every
    # distance exact, so the search and the brute force see the same numbers
    res = find_pairs(keys, canvases, np.arange(n), t, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO)
    want = _brute(D, set(range(n)), t, DEFAULT_RATIO, RATIO_REACH, RATIO_RANK)
    assert {tuple(p) for p in res.pairs.tolist()} == want
    assert res.by_ratio == len(want - _brute(D, set(range(n)), t, None, RATIO_REACH, RATIO_RANK))
    np.testing.assert_allclose(res.distances, [D[a, b] for a, b in sorted(want)], atol=1e-9)


def test_the_band_is_exercised_both_ways(collection):
    """At t = 0.08 the ratio test accepts some pairs of the band and refuses others (the
    collection is built so; otherwise the test above would check nothing of the rule)."""
    keys, canvases, D, d = collection
    n = len(keys)
    band = [(a, b) for a in range(n) for b in range(a + 1, n) if 0.08 < D[a, b] <= RATIO_REACH * 0.08]
    yes = _brute(D, set(range(n)), 0.08, DEFAULT_RATIO, RATIO_REACH, RATIO_RANK)
    assert any(p in yes for p in band) and any(p not in yes for p in band)


def test_off_is_the_threshold_alone(collection):
    keys, canvases, D, d = collection
    n = len(keys)
    res = find_pairs(keys, canvases, np.arange(n), 0.12, descriptor=d, k=n - 1, refine=100.0, ratio=None)
    assert {tuple(p) for p in res.pairs.tolist()} == {(a, b) for a in range(n) for b in range(a + 1, n)
                                                       if D[a, b] <= 0.12}
    assert res.by_ratio == 0


def test_a_query_subset_gets_the_decisions_of_the_whole_search(collection):
    """Images outside the queries are searched for their backgrounds, so a pair is decided
    the same whichever of its images was asked about."""
    keys, canvases, D, d = collection
    n = len(keys)
    full = find_pairs(keys, canvases, np.arange(n), 0.08, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO)
    q = np.arange(20, n)  # the copies only
    part = find_pairs(keys, canvases, q, 0.08, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO)
    touching = {tuple(p) for p in full.pairs.tolist() if p[0] in q or p[1] in q}
    assert {tuple(p) for p in part.pairs.tolist()} == touching == _brute(
        D, set(q.tolist()), 0.08, DEFAULT_RATIO, RATIO_REACH, RATIO_RANK)


def test_local_background_and_bad_settings(collection):
    assert local_background(np.array([0.5, 0.1, 0.3]), 2) == 0.3
    assert local_background(np.array([0.5, 0.1, 0.3]), 10) == 0.5  # fewer: the farthest
    assert local_background(np.array([]), 3) is None
    keys, canvases, _, d = collection
    for bad in ({"ratio": 0.0}, {"ratio": -1.0}, {"ratio": 0.5, "reach": 0.9}, {"ratio": 0.5, "ratio_rank": 0}):
        with pytest.raises(ValueError, match="ratio"):
            find_pairs(keys, canvases, np.arange(3), 0.2, descriptor=d, **bad)


def test_no_ratio_test_where_the_background_cap_binds(collection):
    """A collection whose unrelated images come close (the cap binds: 8x8 digits) keeps the
    capped threshold alone; where the cap does not bind the ratio test runs."""
    keys, canvases, D, d = collection
    n = len(keys)
    ref = np.arange(n)
    capped = find_pairs(keys, canvases, ref, 0.2, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO,
                        relative=0.01, reference=ref)
    assert capped.threshold < 0.2 and capped.by_ratio == 0
    assert {tuple(p) for p in capped.pairs.tolist()} == {(a, b) for a in range(n) for b in range(a + 1, n)
                                                         if D[a, b] <= capped.threshold}
    loose = find_pairs(keys, canvases, ref, 0.08, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO,
                       relative=100.0, reference=ref)
    assert loose.threshold == 0.08 and loose.by_ratio > 0


def test_refinement_in_worker_processes_gives_the_same_numbers(collection):
    """Large verifications refine in forked processes; the numbers are the serial loop's."""
    keys, canvases, D, d = collection
    n = len(keys)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    serial = PairVerifier(Aligner(), canvases, True, refine_below=np.inf, workers=1).distances(pairs)
    forked = PairVerifier(Aligner(), canvases, True, refine_below=np.inf, workers=2, parallel_min=1).distances(pairs)
    np.testing.assert_array_equal(serial, forked)
    part = PairVerifier(Aligner(), canvases, True, refine_below=0.3, workers=2, parallel_min=1).distances(pairs)
    assert (part >= serial - 1e-6).all()  # above refine_below: coarse (float32) upper bounds
    assert (part > serial + 1e-3).any()    # ... which some pairs are
    low = part <= 0.25                      # refined, so exact: the serial loop's numbers
    assert low.sum() > 0
    np.testing.assert_array_equal(part[low], serial[low])


def _low_dim_embeddings(n: int, seed: int = 0):
    """Unit vectors in 3 dimensions (so that cosines spread over [-1, 1]) for the images and
    their mirror images: made up, to exercise both sides of the embedding's rule."""
    rng = np.random.default_rng(seed)
    e, em = (rng.normal(size=(n, 3)) for _ in range(2))
    return e / np.linalg.norm(e, axis=1, keepdims=True), em / np.linalg.norm(em, axis=1, keepdims=True)


def test_the_embedding_rule_matches_brute_force(collection):
    """Step 6: a band pair is a duplicate when the ratio test keeps it and its cosine (the
    better of b and its mirror image) is >= the floor, or when its cosine is >= the high mark;
    pairs within the threshold whatever their cosine. Checked against the brute force, with
    both sides of the rule exercised."""
    from curate.duplicates.choices import COSINE_FLOOR, COSINE_HIGH

    keys, canvases, D, d = collection
    n, t = len(keys), 0.08
    e, em = _low_dim_embeddings(n, seed=3)  # a seed under which both sides decide something

    def cos(a, b):
        return max(float(e[a] @ e[b]), float(e[a] @ em[b]))

    ratio_yes = _brute(D, set(range(n)), t, DEFAULT_RATIO, RATIO_REACH, RATIO_RANK)
    band = [(a, b) for a in range(n) for b in range(a + 1, n) if t < D[a, b] <= RATIO_REACH * t]
    want = {p for p in ratio_yes if D[p] <= t} | {
        p for p in band if (p in ratio_yes and cos(*p) >= COSINE_FLOOR) or cos(*p) >= COSINE_HIGH}
    res = find_pairs(keys, canvases, np.arange(n), t, descriptor=d, k=n - 1, refine=100.0, ratio=DEFAULT_RATIO,
                     embeddings=(e, em))
    assert {tuple(p) for p in res.pairs.tolist()} == want
    assert res.by_ratio == len(want) - len([p for p in want if D[p] <= t])
    assert res.by_embedding == len([p for p in band if p not in ratio_yes and cos(*p) >= COSINE_HIGH])
    # both sides of the rule decided something here: the embedding added a pair the ratio
    # test refused, and refused one it kept
    assert res.by_embedding > 0 and isinstance(res.by_embedding, int)  # a count, as JSON takes it
    assert any(p in ratio_yes and cos(*p) < COSINE_FLOOR for p in band)
    # without the ratio test there is no band, and the embedding changes nothing
    off = find_pairs(keys, canvases, np.arange(n), t, descriptor=d, k=n - 1, refine=100.0, ratio=None,
                     embeddings=(e, em))
    assert {tuple(p) for p in off.pairs.tolist()} == {p for p in ratio_yes if D[p] <= t}


def test_embeddings_of_the_wrong_shape_are_refused(collection):
    keys, canvases, _, d = collection
    e, em = _low_dim_embeddings(len(keys) - 1)
    with pytest.raises(ValueError, match="embeddings"):
        find_pairs(keys, canvases, np.arange(3), 0.2, descriptor=d, ratio=DEFAULT_RATIO, embeddings=(e, em))


def test_embeddings_as_a_function_are_asked_for_the_band_alone(collection):
    """Given as a function, the embeddings are asked for once, for exactly the images of the
    band's pairs, and decide as the full arrays do; where there is no band (ratio off, or the
    background cap binds) they are not asked for at all."""
    keys, canvases, D, d = collection
    n, t = len(keys), 0.08
    e, em = _low_dim_embeddings(n, seed=3)
    calls = []

    def embed(rows):
        calls.append(rows.copy())
        return e[rows], em[rows]

    kw = dict(descriptor=d, k=n - 1, refine=100.0)
    full = find_pairs(keys, canvases, np.arange(n), t, ratio=DEFAULT_RATIO, embeddings=(e, em), **kw)
    lazy = find_pairs(keys, canvases, np.arange(n), t, ratio=DEFAULT_RATIO, embeddings=embed, **kw)
    assert lazy.pairs.tolist() == full.pairs.tolist() and lazy.by_embedding == full.by_embedding
    band = {i for a in range(n) for b in range(a + 1, n) if t < D[a, b] <= RATIO_REACH * t for i in (a, b)}
    assert len(calls) == 1 and calls[0].tolist() == sorted(band) and len(band) < n
    calls.clear()
    find_pairs(keys, canvases, np.arange(n), t, ratio=None, embeddings=embed, **kw)
    ref = np.arange(n)
    find_pairs(keys, canvases, ref, 0.2, ratio=DEFAULT_RATIO, embeddings=embed, relative=0.01, reference=ref, **kw)
    assert calls == []
