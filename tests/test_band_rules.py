"""The band set's rules (curate.bench._real_pairs_band): the rule named "shipped" decides
exactly as cb.dedupe's search with the copy embedding, and a rule that reaches beyond the
ratio test's band adds exactly the pairs a brute force over all exact distances and
cosines names; the sample's cells and weights are checked by hand."""
import numpy as np
import pytest

from curate.bench import _real_pairs_band as B
from curate.bench import _real_pairs_core as R
from curate.duplicates import Aligner, Descriptor
from curate.duplicates import edits as E
from curate.duplicates.choices import RATIO_REACH
from curate.duplicates.copy_embedding import CopyEmbedding, cosine
from curate.duplicates.verify import PairVerifier


@pytest.fixture(scope="module")
def collection():
    """16 synthetic photos and two strongly edited copies of each of photos 0-7 (crops to
    30 %, colour casts, blur): pairs fall within the threshold, in the band and beyond."""
    from curate.bench._copy_embedding import STRONG

    photos = E.natural_like(16, seed=5)
    rng = np.random.default_rng(1)
    copies = [E.apply_real(photos[i % 8], E.draw_real(rng, STRONG)) for i in range(16)]
    u8 = np.concatenate([photos, np.stack(copies)])
    x = u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    keys, canvases = Descriptor().describe(x)
    e, em = CopyEmbedding().embed(x)
    n = len(u8)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    exact = PairVerifier(Aligner(), canvases, True, refine_below=np.inf).distances(pairs)
    cos = cosine(e, em, pairs[:, 0], pairs[:, 1])
    rows = [{"a": int(i), "b": int(j), "label": 1} for i, j in pairs.tolist()]
    return keys, canvases, e, em, rows, exact, cos


def test_the_shipped_rule_is_the_search_with_the_embedding(collection):
    keys, canvases, e, em, rows, _, _ = collection
    got = B.decisions(keys, canvases, e, em, rows, rules=[("shipped", 0.9, None, None)])["shipped"]
    want, _ = R.decided(keys, canvases, rows, embeddings=(e, em))
    np.testing.assert_array_equal(got, want)
    assert want.any() and not want.all()


def test_a_rule_beyond_the_band_adds_exactly_the_brute_force_pairs(collection):
    """With every pair a candidate (k = n), the rule beyond the band keeps what the shipped
    rule keeps plus every pair with 0.35 < exact distance <= reach and cosine >= its floor
    (reach 0.7 here: the synthetic photos' copies stay within the band, unrelated photos
    come from 0.5)."""
    keys, canvases, e, em, rows, exact, cos = collection
    n = len(keys)
    rules = [("shipped", 0.9, None, None), ("beyond", 0.9, 0.7, 0.3)]
    got = B.decisions(keys, canvases, e, em, rows, rules=rules, k=n)
    band_end = 0.2 * RATIO_REACH
    extra = (exact > band_end) & (exact <= 0.7) & (cos >= 0.3)
    assert extra.sum() >= 2  # the check can fail: the rule has pairs to add
    np.testing.assert_array_equal(got["beyond"], got["shipped"] | extra)


def test_a_verifier_rule_adds_exactly_the_brute_force_pairs(collection):
    """A verifier rule keeps what the shipped rule keeps, plus band pairs whose score is >= the
    band score and pairs beyond the band (to reach) whose score is >= the beyond score: the
    score here is any function of the pair (a scaled exact distance's complement), checked
    against all exact distances with every pair a candidate."""
    keys, canvases, e, em, rows, exact, cos = collection
    n = len(keys)
    D = {tuple(p): d for p, d in zip([(r["a"], r["b"]) for r in rows], exact.tolist())}

    def verifier(ab):
        return np.array([10 * (1 - D[(min(a, b), max(a, b))]) for a, b in ab.tolist()])

    got = B.decisions(keys, canvases, e, em, rows, rules=[("shipped", 0.9, None, None)], verifier=verifier,
                      verifier_rules=[("v", 7.5, 0.7, 4.0)], k=n)
    band_end = 0.2 * RATIO_REACH
    v = 10 * (1 - exact)
    extra = ((exact > 0.2) & (exact <= band_end) & (v >= 7.5)) | ((exact > band_end) & (exact <= 0.7) & (v >= 4.0))
    assert (extra & ~got["shipped"]).sum() >= 2  # the rule has pairs to add
    np.testing.assert_array_equal(got["v"], got["shipped"] | extra)


def test_the_search_with_a_verifier_is_the_bench_rule_with_the_floor(collection):
    """find_pairs' step 7 (a verifier given to the search itself, as cb.dedupe(verifier=True)
    does) decides every pair exactly as the bench's verifier rule with the embedding's floor,
    and adds pairs to the search without it."""
    keys, canvases, e, em, rows, exact, cos = collection
    n = len(keys)
    D = {tuple(p): d for p, d in zip([(r["a"], r["b"]) for r in rows], exact.tolist())}

    def verifier(ab):
        return np.array([10 * (1 - D[(min(a, b), max(a, b))]) for a, b in ab.tolist()])

    floor = 0.3  # low enough that the synthetic copies' cosines pass it
    bench = B.decisions(keys, canvases, e, em, rows, rules=[("shipped", 0.9, None, None)], verifier=verifier,
                        verifier_rules=[("v", 7.5, 0.7, 4.0, floor)], k=n)
    got, info = R.decided(keys, canvases, rows, embeddings=(e, em), verifier=verifier, verifier_logit=7.5,
                          verifier_beyond=4.0, verifier_reach=0.7 / 0.2, cosine_floor=floor, k=n)
    without, _ = R.decided(keys, canvases, rows, embeddings=(e, em), cosine_floor=floor, k=n)
    np.testing.assert_array_equal(got, bench["v"])
    assert (got & ~without).sum() >= 2 and info["by_verifier"] == (got & ~without).sum()
    assert not (without & ~got).any()


def test_the_search_asks_the_verifier_only_for_pairs_its_answer_can_keep(collection):
    """Step 7 asks for no pair below the cosine floor, none that steps 1-6 keep, and for
    every pair it adds: the cheaper call decides as asking for all pairs would (above)."""
    keys, canvases, e, em, rows, exact, cos = collection
    n = len(keys)
    D = {tuple(p): d for p, d in zip([(r["a"], r["b"]) for r in rows], exact.tolist())}
    C = {tuple(p): c for p, c in zip([(r["a"], r["b"]) for r in rows], cos.tolist())}
    asked = []

    def verifier(ab):
        asked.extend((min(a, b), max(a, b)) for a, b in ab.tolist())
        return np.array([10 * (1 - D[(min(a, b), max(a, b))]) for a, b in ab.tolist()])

    floor = 0.3
    got, _ = R.decided(keys, canvases, rows, embeddings=(e, em), verifier=verifier, verifier_logit=7.5,
                       verifier_beyond=4.0, verifier_reach=0.7 / 0.2, cosine_floor=floor, k=n)
    without, _ = R.decided(keys, canvases, rows, embeddings=(e, em), cosine_floor=floor, k=n)
    key = [(r["a"], r["b"]) for r in rows]
    kept_before = {p for p, w in zip(key, without) if w}
    added = {p for p, g, w in zip(key, got, without) if g and not w}
    assert asked and len(asked) == len(set(asked))
    assert all(C[p] >= floor for p in asked)
    assert not kept_before & set(asked)
    assert added <= set(asked) and len(added) < len(asked)


def test_the_search_refuses_a_verifier_without_embeddings(collection):
    keys, canvases, _, _, rows, _, _ = collection
    with pytest.raises(ValueError, match="verifier"):
        R.decided(keys, canvases, rows, verifier=lambda ab: np.zeros(len(ab)))


def test_cells_and_weights_by_hand():
    assert B.cell(0.25, 0.95, "test-train") == ("test-train", 0, 3)
    assert B.cell(0.36, 0.1, "train-train") == ("train-train", 2, 0)
    assert B.cell(0.19, 0.9, "train-train") is None and B.cell(0.45, 0.9, "train-train") is None
    pooled = [{"a": i, "b": i + 100, "cell": c} for i, c in enumerate([("k", 0, 0)] * 6 + [("k", 1, 3)] * 2)]
    rows = [{"a": 100, "b": 0}, {"a": 1, "b": 101}, {"a": 6, "b": 106}]
    cells, w = B.weights(rows, pooled)
    assert cells == [("k", 0, 0), ("k", 0, 0), ("k", 1, 3)]
    np.testing.assert_allclose(w, [3.0, 3.0, 2.0])
    s = B.sample(pooled, seed=0, per=4)
    assert len(s) == 6 and sum(r["cell"] == ("k", 1, 3) for r in s) == 2
    assert [r["a"] for r in B.sample(pooled, seed=0, per=4)] == [r["a"] for r in s]  # seeded


def test_the_band_set_is_well_formed_and_apart_from_the_other_sets():
    """cifar10_pairs_band.csv: the shipped columns, halves by image series (no image in
    both), no image of the first two sets, both labels in each half."""
    import csv

    with open(B.DATA_BAND, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == R.COLUMNS
    band = R.load_pairs(B.DATA_BAND)
    others = {g for r in R.load_pairs(R.DATA) + R.load_pairs(R.DATA_FRESH) for g in (r["a"], r["b"])}
    assert not {g for r in band for g in (r["a"], r["b"])} & others
    half_of_image = {}
    for r in band:
        for g in (r["a"], r["b"]):
            assert half_of_image.setdefault(g, r["half"]) == r["half"]
    for h in R.HALVES:
        lab = [r["label"] for r in band if r["half"] == h]
        assert lab.count(1) >= 40 and lab.count(0) >= 80
    assert len({(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in band}) == len(band)


@pytest.mark.parametrize("round_", range(1, len(B.BAND_FRESH) + 1))
def test_each_fresh_band_set_is_test_train_and_apart_from_every_earlier_set(round_):
    import csv

    path = B.BAND_FRESH[round_ - 1]
    with open(path, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == R.COLUMNS
    fresh = R.load_pairs(path)
    others = R.load_pairs(R.DATA) + R.load_pairs(R.DATA_FRESH) + R.load_pairs(B.DATA_BAND)
    for earlier in B.BAND_FRESH[:round_ - 1]:
        others += R.load_pairs(earlier)
    assert not {g for r in fresh for g in (r["a"], r["b"])} & {g for r in others for g in (r["a"], r["b"])}
    assert {r["kind"] for r in fresh} == {"test-train"} and {r["half"] for r in fresh} == {"reporting"}
    lab = [r["label"] for r in fresh]
    assert lab.count(1) >= 50 and lab.count(0) >= 100
