"""dedupe() with the default descriptor on real FiftyOne datasets: planted edited
copies are grouped with their sources and nothing else, the keys are a FiftyOne
similarity index (registered, sortable, removable), and nothing depends on batch size
or order. Images: synthetic natural-like photos written as PNG by the test."""
import numpy as np
import pytest
from PIL import Image

from curate.brain import dedupe
from curate.duplicates import Descriptor
from curate.duplicates import edits as E

EDITS = [("crop", E.edge_cases("crop")[2]), ("shift", {"dx": 3, "dy": -3}), ("mirror", {}),
         ("brightness_contrast", {"brightness": 1.2, "contrast": 0.8}),
         ("colour", E.edge_cases("colour")[0]), ("reencode", {"quality": 30})]


@pytest.fixture
def photos_ds(fo, tmp_path, request):
    """30 unrelated photos + one edited copy of each of the first 6 (one kind each);
    sample field ``item``: 0..29 photos, 30 + j the copy of photo j; ``volume_growth``
    = a known score."""
    photos = E.natural_like(30, seed=21)
    images = list(photos) + [E.apply(photos[j], kind, params) for j, (kind, params) in enumerate(EDITS)]
    fields = [{"item": i, "volume_growth": float((7 * i) % 30) if i < 30 else 100.0 + i - 30}
              for i in range(len(images))]
    yield from _png_dataset(fo, tmp_path, "dd-" + request.node.name[:50], images, fields)


def _png_dataset(fo, folder, name: str, images, fields):
    """A dataset of the images written as PNG, sample i with ``fields[i]``; deleted after."""
    samples = []
    for i, (im, f) in enumerate(zip(images, fields)):
        path = folder / f"im{i:02d}.png"
        Image.fromarray(im).save(path)
        samples.append(fo.Sample(filepath=str(path), **f))
    ds = fo.Dataset(name, overwrite=True)
    ds.add_samples(samples, progress=False)
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def _items(ds, groups):
    item = dict(zip(*ds.values(["id", "item"])))
    return [[item[s] for s in g] for g in groups]


def test_planted_copies_are_grouped_with_their_sources(photos_ds):
    ds = photos_ds
    groups = dedupe(ds, query_tag=None, keep="lowest_score", score_field="volume_growth")
    got = _items(ds, groups)
    # one group per copy, {source, copy}; keep="lowest_score": the source (score < 100) first
    assert got == [[j, 30 + j] for j in range(len(EDITS))]
    assert sorted(ds.match_tags("duplicate").values("item")) == [30 + j for j in range(len(EDITS))]
    numbers = dict(zip(*ds.values(["item", "duplicate_group"])))
    assert {numbers[j] for j in range(6)} == set(range(6)) and numbers[29] is None
    assert all(numbers[j] == numbers[30 + j] for j in range(6))
    # the saved view: group by group, the kept member first
    view = ds.load_saved_view("duplicate_groups")
    assert view.values("item") == [x for g in got for x in g]
    # keep="highest_score" keeps the copies instead
    groups = dedupe(ds, query_tag=None, keep="highest_score", score_field="volume_growth")
    assert _items(ds, groups) == [[30 + j, j] for j in range(len(EDITS))]
    assert sorted(ds.match_tags("duplicate").values("item")) == list(range(6))


def test_only_pairs_with_a_flagged_image_are_searched(photos_ds):
    ds = photos_ds
    ds.match(__import__("fiftyone").ViewField("item").is_in([2, 33])).tag_samples("high_risk")
    groups = dedupe(ds, query_tag="high_risk", keep="lowest_score", score_field="volume_growth")
    assert _items(ds, groups) == [[2, 32], [3, 33]]


def test_keys_do_not_depend_on_how_batches_are_stacked(photos_ds, monkeypatch):
    """dedupe gathers the loader's batches into stacks before describing them: small batches
    in small stacks (a last stack left over) store the keys of one whole stack."""
    import curate.brain.near_duplicates as nd
    from curate.data.loader import load_images

    ds = photos_ds
    monkeypatch.setattr(nd, "DESCRIBE_STACK", 7)
    dedupe(ds, query_tag=None, batch_size=5)
    ids, images, _ = load_images(ds, size=(32, 32), resize=True, num_workers=0)
    keys, _ = Descriptor().describe(images.numpy())
    index = ds.load_brain_results("dedupe")
    row = {s: i for i, s in enumerate(index.sample_ids)}
    assert len(ids) % 10 != 0  # stacks of 10 (two batches of 5): the last stack is smaller
    np.testing.assert_array_equal(np.asarray(index.embeddings)[[row[s] for s in ids]], keys)


def test_mirroring_switch(photos_ds):
    ds = photos_ds
    assert [2, 32] in _items(ds, dedupe(ds, query_tag=None, mirror=True))
    off = _items(ds, dedupe(ds, query_tag=None, mirror=False))
    assert [2, 32] not in off and len(off) == len(EDITS) - 1


def test_keys_are_a_fiftyone_similarity_index(fo, photos_ds):
    ds = photos_ds
    dedupe(ds, query_tag=None)
    assert ds.list_brain_runs() == ["dedupe"]
    info = ds.get_brain_info("dedupe")
    settings = info.config.curate_dedupe
    assert info.config.method == "sklearn" and info.config.metric == "euclidean"
    assert settings["threshold"] == 0.2 and settings["mirror"] is True and settings["groups"] == len(EDITS)
    # the stored embeddings are the descriptor's keys of the loader's images (computed apart)
    from curate.data.loader import load_images

    ids, images, _ = load_images(ds, size=(32, 32), resize=True, num_workers=0)
    keys, _ = Descriptor().describe(images.numpy())
    index = ds.load_brain_results("dedupe")
    row = {s: i for i, s in enumerate(index.sample_ids)}
    np.testing.assert_array_equal(np.asarray(index.embeddings)[[row[s] for s in ids]], keys)
    # "sort by similarity" to a copy: the copy, then its source
    item = dict(zip(*ds.values(["id", "item"])))
    by_item = {v: k for k, v in item.items()}
    for j in (0, 1, 3, 4, 5):  # the unmirrored copies
        near = ds.sort_by_similarity(by_item[30 + j], brain_key="dedupe", k=2).values("item")
        assert near == [30 + j, j]
    # a rerun replaces the index; deleting the run removes it
    dedupe(ds, query_tag=None, threshold=0.1)
    assert ds.list_brain_runs() == ["dedupe"] and ds.get_brain_info("dedupe").config.curate_dedupe["threshold"] == 0.1
    ds.delete_brain_run("dedupe")
    assert ds.list_brain_runs() == []
    with pytest.raises(ValueError):
        ds.sort_by_similarity(by_item[30], brain_key="dedupe", k=2)
    # brain_key=None stores nothing
    dedupe(ds, query_tag=None, brain_key=None)
    assert ds.list_brain_runs() == []


def test_another_run_under_the_brain_key_is_refused(fo, photos_ds):
    import fiftyone.brain as fob

    ds = photos_ds
    fob.compute_similarity(ds, embeddings=np.eye(len(ds))[:, :8], backend="sklearn", brain_key="dedupe",
                           progress=False)
    before = (ds.count_sample_tags(), sorted(ds.get_field_schema()), ds.list_saved_views())
    with pytest.raises(ValueError, match="another run"):
        dedupe(ds, query_tag=None)
    assert (ds.count_sample_tags(), sorted(ds.get_field_schema()), ds.list_saved_views()) == before
    assert getattr(ds.get_brain_info("dedupe").config, "curate_dedupe", None) is None  # untouched
    dedupe(ds, query_tag=None, brain_key="dedupe_2")
    assert sorted(ds.list_brain_runs()) == ["dedupe", "dedupe_2"]


def test_groups_and_index_do_not_depend_on_batch_size_or_order(photos_ds):
    ds = photos_ds
    a = {frozenset(g) for g in dedupe(ds, query_tag=None, batch_size=256)}
    emb_a = dict(zip(ds.load_brain_results("dedupe").sample_ids, np.asarray(ds.load_brain_results("dedupe").embeddings)))
    shuffled = ds.shuffle(seed=3)
    assert shuffled.values("id") != ds.values("id")
    b = {frozenset(g) for g in dedupe(shuffled, query_tag=None, batch_size=5)}
    assert a == b and len(a) == len(EDITS)
    index = ds.load_brain_results("dedupe")
    for s, e in zip(index.sample_ids, np.asarray(index.embeddings)):
        np.testing.assert_array_equal(e, emb_a[s])  # bitwise


def test_pixel_method_is_still_there(photos_ds):
    ds = photos_ds
    # at the default 0.1 RMS the pixel distance finds only the mildest edits: the
    # brightness/contrast copy is farther than that, the mirror far
    groups = _items(ds, dedupe(ds, query_tag=None, method="pixel", keep="first"))
    x = np.stack([np.asarray(Image.open(p), dtype=np.float64).ravel() / 127.5 - 1 for p in ds.values("filepath")])
    rms = [np.sqrt(((x[j] - x[30 + j]) ** 2).mean()) for j in range(len(EDITS))]
    assert groups == [[j, 30 + j] for j in range(len(EDITS)) if rms[j] <= 0.1]
    assert ds.list_brain_runs() == []  # the pixel method stores no index


def test_unreadable_image_is_refused_and_nothing_is_written(fo, photos_ds, tmp_path):
    ds = photos_ds
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    ds.add_sample(fo.Sample(filepath=str(bad), item=99))
    before = (ds.count_sample_tags(), sorted(ds.get_field_schema()), ds.list_saved_views(), ds.list_brain_runs())
    with pytest.raises(ValueError, match="could not be read"):
        dedupe(ds, query_tag=None)
    assert (ds.count_sample_tags(), sorted(ds.get_field_schema()), ds.list_saved_views(),
            ds.list_brain_runs()) == before
    for kw, msg in (({"method": "phash"}, "method"), ({"k": 0}, "k must"), ({"brain_key": "a b"}, "brain_key"),
                    ({"threshold": -1.0}, "threshold"), ({"index": "annoy"}, "index")):
        with pytest.raises(ValueError, match=msg):
            dedupe(ds.limit(30), query_tag=None, **kw)
    assert ds.list_brain_runs() == []


@pytest.fixture
def series_ds(fo, tmp_path, request):
    """20 photos, 14 realistic copies of photo 0 (a crowd, which the ratio test distrusts)
    and one of each of photos 1-4; field ``source``: the photo each image shows."""
    photos = E.natural_like(20, seed=3)
    rng = np.random.default_rng(0)
    sources = list(range(20)) + [0] * 14 + [1, 2, 3, 4]
    images = list(photos) + [E.apply_real(photos[s], E.draw_real(rng)) for s in sources[20:]]
    fields = [{"item": i, "source": s} for i, s in enumerate(sources)]
    yield from _png_dataset(fo, tmp_path, "dd-" + request.node.name[:50], images, fields)


def test_the_copy_embedding_judges_the_ratio_band(series_ds):
    """dedupe's default embeds the images with the shipped copy embedding (step 6 of
    curate.duplicates.search): its groups are those of find_pairs with the embeddings computed
    apart, and embedding=False those without. At threshold 0.1 the embedding accepts copies of
    photo 0 that the ratio test refused in their crowd: the group of photo 0 grows, and no
    group mixes two photos (the known answer: ``source``)."""
    from curate.data.loader import load_images
    from curate.duplicates import find_pairs
    from curate.duplicates.copy_embedding import CopyEmbedding
    from curate.duplicates.grouping import anchored_groups
    from curate.duplicates.search import reference_sample

    ds = series_ds
    ids, images, _ = load_images(ds, size=(32, 32), resize=True, num_workers=0)
    keys, canvases = Descriptor().describe(images.numpy())
    item = dict(zip(*ds.values(["id", "item"])))
    source = dict(zip(*ds.values(["item", "source"])))
    got = {}
    for embedding in (True, False):
        groups = _items(ds, dedupe(ds, query_tag=None, threshold=0.1, embedding=embedding))
        res = find_pairs(keys, canvases, np.arange(len(ids)), 0.1, descriptor=Descriptor(),
                         relative=0.4, reference=reference_sample(keys), ratio=0.5,
                         embeddings=CopyEmbedding().embed(images.numpy()) if embedding else None)
        want = sorted(anchored_groups(len(ids), res.pairs.tolist()), key=min)
        assert groups == [[item[ids[i]] for i in g] for g in want]
        assert all(len({source[m] for m in g}) == 1 for g in groups)
        got[embedding] = groups
        assert ds.get_brain_info("dedupe").config.curate_dedupe["embedding"] is embedding
    size_of_0 = {e: max(len(g) for g in got[e] if 0 in g) for e in got}
    assert size_of_0[True] > size_of_0[False]


def test_the_pair_verifier_is_an_option_that_dedupe_asks_for_the_band_and_beyond(series_ds):
    """dedupe(verifier=True) asks the shipped pair verifier (step 7 of
    curate.duplicates.search) for the pairs of its images it reads again: its groups are those
    of find_pairs with the verifier's logits computed apart from all images at once; no group
    mixes two photos; the run records the option; and without the embedding it is refused
    before anything is written."""
    from curate.data.loader import load_images
    from curate.duplicates import find_pairs
    from curate.duplicates.copy_embedding import CopyEmbedding
    from curate.duplicates.copy_verifier import CopyVerifier
    from curate.duplicates.grouping import anchored_groups
    from curate.duplicates.search import reference_sample

    ds = series_ds
    ids, images, _ = load_images(ds, size=(32, 32), resize=True, num_workers=0)
    x = images.numpy()
    keys, canvases = Descriptor().describe(x)
    item = dict(zip(*ds.values(["id", "item"])))
    source = dict(zip(*ds.values(["item", "source"])))
    net = CopyVerifier()
    asked = []

    def verifier(pairs):
        asked.append(len(pairs))
        return net.logits(x[pairs[:, 0]], x[pairs[:, 1]])

    groups = _items(ds, dedupe(ds, query_tag=None, threshold=0.1, verifier=True))
    res = find_pairs(keys, canvases, np.arange(len(ids)), 0.1, descriptor=Descriptor(), relative=0.4,
                     reference=reference_sample(keys), ratio=0.5, embeddings=CopyEmbedding().embed(x),
                     verifier=verifier)
    assert len(asked) == 1 and asked[0] > 0  # asked once, for the band and beyond
    want = sorted(anchored_groups(len(ids), res.pairs.tolist()), key=min)
    assert groups == [[item[ids[i]] for i in g] for g in want]
    assert all(len({source[m] for m in g}) == 1 for g in groups)
    assert ds.get_brain_info("dedupe").config.curate_dedupe["verifier"] is True
    before = (ds.count_sample_tags(), ds.list_brain_runs())
    with pytest.raises(ValueError, match="verifier"):
        dedupe(ds, query_tag=None, verifier=True, embedding=False)
    assert (ds.count_sample_tags(), ds.list_brain_runs()) == before
