"""The labelled real CIFAR-10 near-duplicate pairs (curate/bench/data/cifar10_pairs.csv) and
the pair evaluation of curate.bench.real_pairs: the CSV is well formed and in range, the
halves share no image series, and recall / pair precision are exact on hand-made
distances. The images themselves (../shared) are needed only by the last test."""
import csv
from pathlib import Path

import numpy as np
import pytest

from curate.bench import real_pairs as R

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"


def test_the_shipped_csv_is_well_formed():
    with open(R.DATA, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == R.COLUMNS
    rows = R.load_pairs()
    seen = set()
    for r in rows:
        for s, i in ((r["split_a"], r["index_a"]), (r["split_b"], r["index_b"])):
            assert s in ("train", "test") and 0 <= int(i) < (50_000 if s == "train" else 10_000)
        assert r["label"] in (0, 1) and r["half"] in R.HALVES
        assert r["split_b"] == "train"  # test pairs with train, or train with train
        assert r["kind"] == ("test-train" if r["split_a"] == "test" else "train-train")
        assert r["a"] != r["b"] and (min(r["a"], r["b"]), max(r["a"], r["b"])) not in seen
        seen.add((min(r["a"], r["b"]), max(r["a"], r["b"])))
    lab = np.array([r["label"] for r in rows])
    assert (lab == 1).sum() >= 300 and (lab == 0).sum() >= 300


def test_the_fresh_reporting_set_is_apart_from_the_labelled_pairs():
    """cifar10_pairs_fresh.csv: well formed, every row 'reporting', no image shared with the
    first set (whose image series were excluded before sampling), both labels present."""
    with open(R.DATA_FRESH, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == R.COLUMNS
    fresh, first = R.load_pairs(R.DATA_FRESH), R.load_pairs()
    assert {r["half"] for r in fresh} == {"reporting"}
    assert not {g for r in fresh for g in (r["a"], r["b"])} & {g for r in first for g in (r["a"], r["b"])}
    lab = np.array([r["label"] for r in fresh])
    assert (lab == 1).sum() >= 200 and (lab == 0).sum() >= 100
    pairs = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in fresh}
    assert len(pairs) == len(fresh)


def test_fresh_exclusion_takes_whole_series():
    """Images joined to a labelled image by candidates within reach (a chain) are excluded;
    a pair farther than reach does not join."""
    cands = [{"a": 1, "b": 2, "distance": 0.1}, {"a": 2, "b": 3, "distance": 0.3},
             {"a": 3, "b": 4, "distance": 0.5}, {"a": 5, "b": 6, "distance": 0.05}]
    assert R.fresh_exclusion(cands, [{"a": 1, "b": 9}]) == {1, 2, 3, 9}
    assert R.fresh_exclusion(cands, [{"a": 6, "b": 7}]) == {5, 6, 7}


def test_halves_share_no_image():
    rows = R.load_pairs()
    half_of_image = {}
    for r in rows:
        for g in (r["a"], r["b"]):
            assert half_of_image.setdefault(g, r["half"]) == r["half"], f"image {g} in both halves"
    assert {r["half"] for r in rows} == set(R.HALVES)


def test_assign_halves_follows_components():
    # a chain 1-2-3 and a separate pair 10-11: the chain takes the half of its smallest image
    rows = [{"a": 2, "b": 1, "label": 1}, {"a": 3, "b": 2, "label": 0}, {"a": 11, "b": 10, "label": -1}]
    out = R.assign_halves(rows)
    assert out[0]["half"] == out[1]["half"] == R.half_of(1)
    assert out[2]["half"] == R.half_of(10)
    assert R.components([(5, 7), (7, 9), (1, 2)]) == {5: 5, 7: 5, 9: 5, 1: 1, 2: 1}


def test_evaluation_is_exact_on_hand_made_distances():
    d = [0.05, 0.15, 0.25, 0.35, 0.1, 0.3, 0.5]
    y = [1, 1, 1, 1, 0, 0, 0]
    e = R.evaluate(d, y, 0.2)  # positives 0.05, 0.15 in; negative 0.1 in
    assert (e["tp"], e["fp"], e["positives"], e["negatives"]) == (2, 1, 4, 3)
    assert e["recall"] == 0.5 and e["precision"] == pytest.approx(2 / 3)
    e = R.evaluate(d, y, 0.3)
    assert e["recall"] == 0.75 and e["precision"] == pytest.approx(3 / 5)
    b = R.best_threshold(d, y, 0.95)  # 0.05 alone keeps precision 1; 0.1 brings a negative
    assert b["threshold"] == 0.05 and b["recall"] == 0.25
    q = R.distribution(d, y, qs=(0.5,))
    assert q[1]["q50"] == pytest.approx(0.2) and q[0]["q50"] == pytest.approx(0.3)


def test_positive_pairs_are_closer_than_negatives_on_real_images():
    """On the images themselves (from ../shared): the fitted residual of a positive pair
    is typically far below a negative's (the labels are about the pixels)."""
    if not (CIFAR / "order.csv").is_file():
        pytest.skip(f"CIFAR-10 image tree not found at {CIFAR}")
    from PIL import Image

    from curate.bench._real_pairs_fit import fit_pair
    from curate.data.cifar import tree_files

    files = {s: {i: p for i, _, p in tree_files(CIFAR, s)} for s in ("train", "test")}
    rows = R.load_pairs(half="tuning")
    pos = [r for r in rows if r["label"] == 1][:8]
    neg = [r for r in rows if r["label"] == 0][:8]

    def residual(r):
        a, b = (np.asarray(Image.open(files[r[f"split_{x}"]][int(r[f"index_{x}"])]).convert("RGB")) for x in "ab")
        return fit_pair(a, b)["residual"]

    assert np.median([residual(r) for r in pos]) < 0.5 * np.median([residual(r) for r in neg])


def test_copy_embedding_training_is_seeded_and_mirror_aware():
    """The learned copy embedding of curate.bench._copy_embedding: unit vectors; training is
    seeded (two runs on the same views give the same weights, one with its progress bar); the mirror embedding of an
    image is the embedding of its left-right flip; a copy ends closer to its source than a
    random other image does after a few steps on edited views."""
    import torch

    from curate.bench import _copy_embedding as C
    from curate.duplicates import edits

    torch.set_num_threads(1)
    images = edits.natural_like(300, seed=3)
    v = np.stack([[edits.apply_real(im, edits.draw_real(np.random.default_rng((k, i)))) for i, im in enumerate(images)]
                  for k in range(2)])
    nets = [C.train(images, v, steps=25, progress=p) for p in (False, True)]  # the bar changes nothing
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    e, em = C.embed(nets[0], images)
    assert e.shape == (300, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    flipped, _ = C.embed(nets[0], np.ascontiguousarray(images[:, :, ::-1]))
    assert np.allclose(em, flipped, atol=1e-5)
    # views of the training batches: an edited copy ranks its source first far more often than chance
    copies = np.stack([edits.apply_real(im, edits.draw_real(np.random.default_rng((9, i)))) for i, im in
                       enumerate(images[:100])])
    ec, _ = C.embed(nets[0], copies)
    top1 = (ec @ e.T).argmax(1) == np.arange(100)
    assert top1.mean() > 0.5


def test_lookalike_batches_hold_crowds_and_mask_possible_copies(tmp_path):
    """Look-alike batches (``--batches lookalike``): each seed brings up to PER_SEED of its
    candidates farther than LOOKALIKE_FAR, never one within it; the batch has BATCH distinct
    images; the mask is exactly the batch's pairs that are candidates within LOOKALIKE_FAR
    (checked pair by pair), and a network of another width trains and reloads the same."""
    import torch
    from safetensors.torch import save_file

    from curate.bench import _copy_embedding as C
    from curate.duplicates import copy_embedding as E
    from curate.duplicates import edits

    n, rng = 400, np.random.default_rng(5)
    cands = [{"a": int(a), "b": int(b), "distance": float(d)} for a, b, d in
             zip(rng.integers(0, n + 20, 3000), rng.integers(0, n + 20, 3000), rng.uniform(0.05, 0.8, 3000)) if a != b]
    hard, near = C.lookalikes(cands, n)
    far = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in cands if r["a"] < n and r["b"] < n
           and r["distance"] > C.LOOKALIKE_FAR}
    close = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in cands if r["a"] < n and r["b"] < n
             and r["distance"] <= C.LOOKALIKE_FAR}
    assert {(min(a, b), max(a, b)) for a in range(n) for b in hard[a]} == far
    assert set(near.tolist()) == {a * n + b for a, b in close}
    for _ in range(3):
        idx, mask = C.batch(rng, n, (hard, near))
        assert len(set(idx.tolist())) == len(idx) == C.BATCH
        want = np.array([[i != j and (min(i, j), max(i, j)) in close for j in idx] for i in idx])
        assert np.array_equal(mask, want) and mask.any()
    idx, mask = C.batch(np.random.default_rng(0), n)
    assert mask is None and len(set(idx.tolist())) == C.BATCH
    # the first seed is followed by look-alikes of it only
    seed_rng = np.random.default_rng(1)
    idx, _ = C.batch(seed_rng, n, (hard, near))
    s = int(idx[0])
    k = min(len(hard[s]), C.PER_SEED)
    assert set(idx[1:1 + k].tolist()) <= set(hard[s].tolist())

    torch.set_num_threads(1)
    images = edits.natural_like(300, seed=4)
    v = images[None].repeat(2, 0)
    net = C.train(images, v, steps=25, progress=False, width=8, alike=C.lookalikes(cands, 300))
    assert sum(t.numel() for t in net.parameters()) < sum(t.numel() for t in E.network().parameters())
    save_file({k: t.contiguous() for k, t in net.state_dict().items()},
              tmp_path / f"{C.stem('strong', 25, 8, 'lookalike')}.safetensors")
    back = C.load_network(tmp_path, "strong", 25, 8, "lookalike")
    assert np.allclose(C.embed(back, images[:10])[0], C.embed(net, images[:10])[0], atol=1e-6)
    assert C.load_network(tmp_path, "strong", 25) is None  # another setting, another file


def test_pool_weights_stand_for_the_bins_pools():
    """A labelled pair of a bin stands for (bin's pool) / (bin's labelled pairs) candidate
    pairs; the last bin's pool holds only nearest-neighbour pairs; excluded images leave
    the pool. The weighted recall is then the pool's, by hand."""
    bins = ((0.0, 0.1, 1), (0.1, 0.6, 1))

    def cand(a, b, d, near="1"):
        return {"a": a, "b": b, "kind": "train-train", "distance": d, "key_rank": near, "thumb_rank": "-1"}

    cands = [cand(1, 2, 0.05), cand(3, 4, 0.06), cand(5, 6, 0.07), cand(7, 8, 0.3, "0"), cand(9, 10, 0.3),
             cand(11, 12, 0.4, "0")]
    rows = [{"a": 2, "b": 1}, {"a": 7, "b": 8}]
    np.testing.assert_allclose(R.pool_weights(rows, cands, bins), [3.0, 2.0])  # 9-10 is not nearest
    np.testing.assert_allclose(R.pool_weights(rows, cands, bins, exclude={5}), [2.0, 2.0])
    e = R.evaluate_weighted([True, False], [1, 1], [3.0, 2.0])
    assert e["recall"] == pytest.approx(0.6) and e["precision"] == 1.0
    e = R.evaluate_weighted([True, True], [1, 0], [3.0, 2.0])
    assert e["recall"] == 1.0 and e["precision"] == pytest.approx(0.6)


def test_weighted_interval_holds_the_estimate_and_is_exact_when_a_cell_is_uniform():
    """A cell whose pairs all agree resamples to itself: with every cell uniform the
    interval collapses onto the estimate; with a mixed cell it covers it."""
    cells = [("k", 0)] * 3 + [("k", 1)] * 2
    w = np.array([1.0, 1.0, 1.0, 10.0, 10.0])
    y = np.array([1, 1, 1, 1, 1])
    hit = np.array([True, True, True, False, False])
    e = R.evaluate_weighted(hit, y, w)
    ci = R.weighted_interval(hit, y, cells, w, boot=200)
    assert e["recall"] == pytest.approx(3 / 23) and ci["recall_ci"] == pytest.approx([3 / 23, 3 / 23])
    hit[4] = True
    ci = R.weighted_interval(hit, y, cells, w, boot=500)
    e = R.evaluate_weighted(hit, y, w)
    assert ci["recall_ci"][0] < e["recall"] < ci["recall_ci"][1]


def test_best_ranks_keep_the_best_rank_either_image_gives_the_other():
    from curate.bench._real_pairs_mine import best_ranks

    nb = np.array([[1, 2, 3], [2, 0, 3], [0, 1, 3], [2, 1, 0]])
    assert best_ranks(nb) == {(0, 1): 0, (0, 2): 0, (0, 3): 2, (1, 2): 0, (1, 3): 1, (2, 3): 0}


def test_every_judged_csv_is_in_the_judging_order_and_earlier_files_hold_fewer_pairs():
    from curate.bench import _real_pairs_core as R

    assert sorted(R.JUDGED_IN_ORDER) == sorted(p.name for p in R.DATA.parent.glob("cifar10_pairs*.csv"))
    sizes = [len(R.judged_pairs(n)) for n in R.JUDGED_IN_ORDER[1:]] + [len(R.judged_pairs())]
    assert sizes == sorted(sizes) and sizes[0] > 800
    assert R.judged_pairs(R.JUDGED_IN_ORDER[1]) == {(min(r["a"], r["b"]), max(r["a"], r["b"]))
                                                     for r in R.load_pairs(R.DATA, labels=(-1, 0, 1))}


def test_combined_rules_are_the_search_with_the_embedding():
    """The bench's offline rules (curate.bench._copy_embedding.combined, which compares
    trained networks) decide each labelled pair as the search itself does with the embeddings
    passed in: the shipped rule at the shipped reach and at 0.45, and the ratio test alone.
    On the band set's tuning pairs (aligned distance 0.2-0.45) among 1,000 other CIFAR-10
    images, so that the band's decisions are the ones compared."""
    if not (CIFAR / "order.csv").is_file():
        pytest.skip(f"CIFAR-10 image tree not found at {CIFAR}")
    from PIL import Image

    from curate.bench import _copy_embedding as C
    from curate.bench import _real_pairs_core as RC
    from curate.bench._real_pairs_band import DATA_BAND
    from curate.bench._real_pairs_mine import split_index
    from curate.data.cifar import tree_files
    from curate.duplicates import Descriptor
    from curate.duplicates.choices import COSINE_FLOOR, COSINE_HIGH, RATIO_REACH
    from curate.duplicates.copy_embedding import load

    files = {s: {i: p for i, _, p in tree_files(CIFAR, s)} for s in ("train", "test")}
    sub, rows = RC.collection(RC.load_pairs(DATA_BAND, "tuning")[:60], 60_000, 1000)
    u8 = np.stack([np.asarray(Image.open(files[s][i]).convert("RGB")) for s, i in map(split_index, sub.tolist())])
    keys, canvases = Descriptor().describe(u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    e, em = C.embed(load(), u8)
    grid = [(RATIO_REACH, COSINE_FLOOR, COSINE_HIGH), (2.25, COSINE_FLOOR, COSINE_HIGH), (RATIO_REACH, 0.0, np.inf)]
    y = np.array([r["label"] for r in rows])
    second = np.where(np.arange(len(rows)) % 3 == 0, -1, y)  # a second judging unsure of every third pair
    got = C.combined(C.searches(keys, canvases, rows, [RATIO_REACH, 2.25]), e, em, rows, grid, second)
    key = [(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in rows]
    founds = []
    for (reach, _, high), r in zip(grid, got):
        want = RC.search(keys, canvases, rows, reach=reach, embeddings=(e, em) if high < np.inf else None)
        pairs = {tuple(p) for p in want.pairs.tolist()}
        hit = np.array([k in pairs for k in key])
        assert (r["found"], r["false_hits"]) == (int((hit & (y == 1)).sum()), int((hit & (y == 0)).sum()))
        assert r["consensus"] == RC.evaluate_hits(hit[second != -1], y[second != -1])
        founds.append(r["found"] + r["false_hits"])
    assert founds[0] != founds[2] and founds[1] != founds[0]  # the embedding and the reach each decide pairs here
