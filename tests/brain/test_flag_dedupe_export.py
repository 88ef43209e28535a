"""flag_high_risk, dedupe (method="pixel") and export_clean against independent numpy
computations; the descriptor method is tested in test_dedupe_descriptor.py."""
import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from curate.brain import dedupe, export_clean, flag_high_risk
from curate.scores import field_of

FIELD = field_of(None)  # the default score's field, which flag_high_risk reads by default


@pytest.fixture
def scored(digits_ds):
    """digits_ds with distinct known scores (a few left unscored)."""
    rng = np.random.default_rng(3)
    ids = digits_ds.values("id")
    scores = rng.normal(size=len(ids))
    values = {i: float(s) for i, s in zip(ids, scores)}
    for i in ids[:5]:
        values[i] = None
    digits_ds.set_values(FIELD, values, key_field="id")
    return digits_ds, {k: v for k, v in values.items() if v is not None}


def test_flag_rules_match_numpy(scored):
    ds, vals = scored
    ids = np.array(list(vals))
    s = np.array(list(vals.values()))
    view = flag_high_risk(ds, top_k=7)
    assert set(view.values("id")) == set(ids[np.argsort(-s)[:7]])
    assert view.values(FIELD) == sorted(view.values(FIELD), reverse=True)
    assert ds.has_saved_view("high_risk") and ds.load_saved_view("high_risk").count() == 7
    view = flag_high_risk(ds, percentile=90)  # replaces the earlier tags
    cut = np.percentile(s, 90)
    assert set(ds.match_tags("high_risk").values("id")) == set(ids[s >= cut])
    flag_high_risk(ds, threshold=0.5, tag="risky", view_name="risky_view")
    assert set(ds.match_tags("risky").values("id")) == set(ids[s >= 0.5])
    assert ds.load_saved_view("risky_view").count() == int((s >= 0.5).sum())
    flag_high_risk(ds, threshold=-100.0)  # unscored samples are never flagged
    assert ds.match_tags("high_risk").count() == len(vals) == ds.count() - 5
    with pytest.raises(ValueError, match="exactly one"):
        flag_high_risk(ds, top_k=3, threshold=1.0)
    with pytest.raises(ValueError, match="no score field 'nope'"):
        flag_high_risk(ds, "nope", top_k=3)


def _add_copies(fo, ds, tmp_path):
    """Add near copies of three test images: exact, small noise, and large noise."""
    rng = np.random.default_rng(5)
    src = ds.match_tags("test").limit(3)
    new = []
    for k, (path, label, noise) in enumerate(zip(src.values("filepath"),
                                                 src.values("ground_truth.label"), (0, 4, 60))):
        arr = np.asarray(Image.open(path)).astype(np.int16)
        arr = np.clip(arr + rng.integers(-noise, noise + 1, arr.shape), 0, 255).astype(np.uint8)
        out = tmp_path / f"copy{k}.png"
        Image.fromarray(arr).save(out)
        new.append(fo.Sample(filepath=str(out), tags=["test"],
                             ground_truth=fo.Classification(label=label)))
    ds.add_samples(new)


def _brute_groups(ds, query_ids, threshold):
    ids = ds.values("id")
    x = np.stack([np.asarray(Image.open(p), dtype=np.float64).ravel() / 127.5 - 1
                  for p in ds.values("filepath")])
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1) / x.shape[1])
    q = np.array([i in query_ids for i in ids])
    adj = (d <= threshold) & (q[:, None] | q[None])
    # connected components by repeated expansion
    seen, groups = set(), []
    for i in range(len(ids)):
        if i in seen:
            continue
        comp, frontier = {i}, [i]
        while frontier:
            j = frontier.pop()
            for k in np.nonzero(adj[j])[0]:
                if k not in comp:
                    comp.add(k), frontier.append(k)
        seen |= comp
        if len(comp) > 1:
            groups.append(frozenset(ids[c] for c in comp))
    return set(groups), d


def test_dedupe_groups_and_keep_rule(fo, scored, tmp_path):
    ds, _ = scored
    _add_copies(fo, ds, tmp_path)
    # Score every sample (copies included) with known values; flag the copies' sources.
    ids = ds.values("id")
    score = {i: float(k) for k, i in enumerate(ids)}
    ds.set_values(FIELD, score, key_field="id")
    sources = ds.match_tags("test").limit(3).values("id")
    ds.select(sources).tag_samples("high_risk")
    # method="pixel": today's exact pixel L2 (the default is now the descriptor)
    groups = dedupe(ds, threshold=0.1, method="pixel", query_tag="high_risk", keep="lowest_score",
                    score_field=FIELD)
    want, d = _brute_groups(ds, set(sources), 0.1)
    assert {frozenset(g) for g in groups} == want
    assert len(want) >= 2  # the exact and the slightly noisy copy; the far one is not a duplicate
    for g in groups:
        assert g[0] == min(g, key=lambda i: score[i])  # keep="lowest_score"
    tagged = set(ds.match_tags("duplicate").values("id"))
    assert tagged == {i for g in groups for i in g[1:]}
    numbers = dict(zip(*ds.values(["id", "duplicate_group"])))
    assert {numbers[i] for g in groups for i in g} == set(range(len(groups)))
    # keep="highest_score" keeps the other end of every group
    groups_hi = dedupe(ds, threshold=0.1, keep="highest_score", method="pixel", query_tag="high_risk",
                       score_field=FIELD)
    for g in groups_hi:
        assert g[0] == max(g, key=lambda i: score[i])
    assert set(ds.match_tags("duplicate").values("id")) == {i for g in groups_hi for i in g[1:]}


def _content(paths_labels):
    return sorted((lab, hashlib.sha256(np.asarray(Image.open(p)).tobytes()).hexdigest())
                  for p, lab in paths_labels)


def test_export_reimports_exactly_the_kept_samples(fo, scored, tmp_path):
    ds, _ = scored
    drop = ds.take(9, seed=1)
    drop.tag_samples("duplicate")
    out = tmp_path / "export"
    n = export_clean(ds, out)
    kept = ds.match_tags("duplicate", bool=False)
    assert n == kept.count() == ds.count() - 9
    back = fo.Dataset.from_dir(dataset_dir=str(out), dataset_type=fo.types.ImageClassificationDirectoryTree,
                               name="reimport-t", overwrite=True)
    try:
        assert _content(zip(back.values("filepath"), back.values("ground_truth.label"))) == \
            _content(zip(kept.values("filepath"), kept.values("ground_truth.label")))
    finally:
        fo.delete_dataset("reimport-t")
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_clean(ds, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing  # untouched
    assert export_clean(ds, out, exclude_tags=(), overwrite=True) == ds.count()
    shutil.rmtree(out)


def test_no_group_member_is_farther_than_the_threshold_from_its_kept_image(fo, tmp_path):
    """A chain a ~ b ~ c (each step 0.078 RMS, a to c 0.157) at threshold 0.1: connected
    components join all three; the default anchored groups keep a with b and leave c out.
    Every member's distance to its kept image is checked with numpy."""
    from curate.data.loader import load_images

    rng = np.random.default_rng(0)
    paths = []
    for j in range(4):
        base = rng.integers(40, 180, size=(8, 8, 3), dtype=np.int64)
        for step in range(3):  # base, base + 10, base + 20 grey levels
            paths.append(tmp_path / f"img{j}_{step}.png")
            Image.fromarray((base + 10 * step).astype(np.uint8)).save(paths[-1])
    ds = fo.Dataset("chain-t", overwrite=True)
    ds.add_samples([fo.Sample(filepath=str(p)) for p in paths], progress=False)
    try:
        ids, x, _ = load_images(ds, num_workers=0)
        flat = x.reshape(len(ids), -1).double().numpy()
        dist = lambda a, b: np.linalg.norm(flat[ids.index(a)] - flat[ids.index(b)]) / np.sqrt(flat.shape[1])  # noqa: E731
        connected = dedupe(ds, method="pixel", threshold=0.1, grouping="connected")
        assert sorted(map(len, connected)) == [3, 3, 3, 3]
        assert max(dist(g[0], m) for g in connected for m in g) > 0.1  # the chain's far end
        groups = dedupe(ds, method="pixel", threshold=0.1)  # default: anchored
        assert sorted(map(len, groups)) == [2, 2, 2, 2]
        for g in groups:
            assert all(dist(g[0], m) <= 0.1 for m in g[1:])
            assert ds[g[0]].filepath.endswith("_0.png")  # keep="first": the base image
    finally:
        fo.delete_dataset("chain-t")
