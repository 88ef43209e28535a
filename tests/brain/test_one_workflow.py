"""A newcomer's flow with no field or kind named anywhere: dedupe -> score -> flag -> export,
through the CLI, the Python API and the App operators, on a folder of plain (unlabelled)
images. Every step's defaults must meet the others' (one set of defaults), and each result
is checked against an independent computation."""
import numpy as np
import pytest
from PIL import Image

import curate.brain as cb
from curate import scores
from curate.cli import main as cli
from curate.duplicates.edits import natural_like

from _plugin import run_operator

N_TRAIN, COPIES = 30, (3, 7, 11)  # 30 synthetic 32x32 photos; three of them copied once more


@pytest.fixture
def plain_images(fo, tmp_path, request):
    """An unlabelled dataset: 30 photo-like images and exact copies of three of them, all tagged ``train``."""
    images = natural_like(N_TRAIN, seed=1)
    paths = []
    for i in range(N_TRAIN):
        paths.append(tmp_path / "imgs" / f"photo_{i:03d}.png")
    for j, i in enumerate(COPIES):
        paths.append(tmp_path / "imgs" / f"copy_{j}_of_{i:03d}.png")
    (tmp_path / "imgs").mkdir()
    for p, i in zip(paths, list(range(N_TRAIN)) + list(COPIES)):
        Image.fromarray(images[i]).save(p)
    name = "flow-" + request.node.name[:40]
    ds = fo.Dataset(name, overwrite=True)
    ds.add_samples([fo.Sample(filepath=str(p), tags=["train"]) for p in paths], progress=False)
    ds.persistent = True  # the CLI opens it by name
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def _copy_groups(ds):
    """The expected groups: each copy with its source, by file name (independent of dedupe)."""
    by_name = {p.rsplit("/", 1)[1]: sid for sid, p in zip(*ds.values(["id", "filepath"]))}
    return sorted(sorted([by_name[f"photo_{i:03d}.png"], by_name[f"copy_{j}_of_{i:03d}.png"]])
                  for j, i in enumerate(COPIES))


def test_defaults_meet_across_cli_python_and_app(fo, foo, plain_images, tmp_path, capsys):
    ds = plain_images
    field = scores.field_of(None)

    # 1. dedupe first: no score exists yet, the whole collection is searched, the first is kept
    assert field not in ds.get_field_schema()
    groups = cb.dedupe(ds)
    assert sorted(sorted(g) for g in groups) == _copy_groups(ds)
    order = ds.values("id")
    assert all(g[0] == min(g, key=order.index) for g in groups)  # keep="first"
    assert ds.match_tags("duplicate").count() == len(COPIES)

    # 2. score with the CLI's defaults (no --score, no --field)
    assert cli(["score", "--dataset", ds.name, "--exact-score", "--no-progress"]) == 0
    ds.reload()
    assert ds.get_brain_info(field).config.score == scores.DEFAULT_KIND
    cli_values = dict(zip(*ds.values(["id", field])))
    assert all(v is not None and np.isfinite(v) for v in cli_values.values())

    # the Python API's defaults write the same field with the same values (a second dataset)
    twin = ds.clone(name=ds.name + "-twin")
    try:
        twin.delete_sample_field(field)
        twin.delete_brain_runs()
        from curate.brain.model_source import exact_score_of

        cb.compute_score(twin, exact_score_of(twin, tag="train"), progress=False)
        got = dict(zip(twin.values("filepath"), twin.values(field)))
        want = dict(zip(ds.values("filepath"), ds.values(field)))
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12)
    finally:
        fo.delete_dataset(twin.name)

    # 3. flag with the Python defaults: the top-k of the default field, by numpy
    view = cb.flag_high_risk(ds, top_k=5)
    ids = np.array(list(cli_values))
    vals = np.array(list(cli_values.values()))
    top = set(ids[np.lexsort((ids, -vals))[:5]])
    assert set(view.values("id")) == top

    # the App's flag operator with an empty form field flags the same images
    ds.untag_samples("high_risk")
    run_operator(foo, "flag_high_risk", ds, rule="top_k", value=5)
    assert set(ds.match_tags("high_risk").values("id")) == top

    # 4. export without labels: a plain folder of the kept images, under their own names
    out = tmp_path / "clean"
    n = cb.export_clean(ds, out, exclude_tags=("duplicate", "high_risk"))
    kept = ds.match_tags(["duplicate", "high_risk"], bool=False)
    removed = set(ds.match_tags("duplicate").values("id")) | top
    assert n == kept.count() == ds.count() - len(removed)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.rsplit("/", 1)[1] for p in kept.values("filepath"))
    for p in kept.values("filepath"):  # the same pixels
        a = np.asarray(Image.open(p))
        assert np.array_equal(a, np.asarray(Image.open(out / p.rsplit("/", 1)[1])))


def test_app_operators_defaults_are_the_python_defaults(fo, foo, plain_images, tmp_path):
    ds = plain_images
    field = scores.field_of(None)
    # dedupe with an empty form: all pairs, keep the first, no score needed
    res = run_operator(foo, "dedupe", ds)
    assert res.result == {"groups": len(COPIES), "tagged": len(COPIES)}
    from fiftyone import ViewField as F

    members = ds.exists("duplicate_group").values("duplicate_group")
    assert sorted(set(members)) == list(range(len(COPIES)))
    assert all(ds.match(F("duplicate_group") == g).count() == 2 for g in range(len(COPIES)))
    # compute_score with only the model chosen: the default kind into its field
    res = run_operator(foo, "compute_score", ds, model="exact", train_tag="train")
    assert res.result["scored"] == ds.count()
    assert ds.get_brain_info(field).config.score == scores.DEFAULT_KIND
    # export with an empty form: images only
    res = run_operator(foo, "export_clean", ds, export_dir=str(tmp_path / "app-out"))
    assert res.result == {"exported": ds.count() - len(COPIES)}
    assert sorted(p.suffix for p in (tmp_path / "app-out").iterdir()) == [".png"] * (ds.count() - len(COPIES))


def test_errors_name_the_call_that_fixes_them(plain_images):
    ds = plain_images
    with pytest.raises(ValueError, match=r"curate\.brain\.compute_score.*curate score --dataset NAME"):
        cb.flag_high_risk(ds, top_k=3)
    with pytest.raises(ValueError, match=r"curate\.brain\.compute_score"):
        cb.dedupe(ds, keep="lowest_score")
    assert ds.match_tags("duplicate").count() == 0  # refused before anything was written
