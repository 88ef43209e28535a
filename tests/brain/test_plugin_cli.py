"""The App plugin through fiftyone.operators.execute_operator, and the CLI, on real datasets."""

import numpy as np
import pytest
import torch

import curate
import curate.brain
import curate.scores
from curate.cli import main as cli
from curate.data.loader import load_images

from _plugin import PLUGINS, URI, run_operator as _run


def _form(foo, name, ds, **params) -> dict:
    """The operator's input form (resolve_input) as the App receives it, JSON."""
    import asyncio

    from fiftyone.operators.executor import resolve_type

    prop = asyncio.run(resolve_type(foo.OperatorRegistry(), URI + name,
                                    {"dataset_name": ds.name, "params": params}))
    return prop.to_json()


def test_operators_on_a_real_dataset(foo, digits_ds, train_model, tmp_path):
    ds = digits_ds
    res = _run(foo, "compute_score", ds, score="volume_growth", score_field="volume_growth", model="exact",
               train_tag="train", steps=2, batch_size=32)
    assert res.result == {"scored": 80, "failed": 0, "skipped": 0}
    ids, images, _ = load_images(ds, num_workers=0)
    want = curate.track_volume_growth(train_model, images, steps=2, dtype=torch.float64,
                                      divergence=None).log_growth.numpy()
    got = dict(zip(*ds.values(["id", "volume_growth"])))
    np.testing.assert_allclose([got[i] for i in ids], want, rtol=1e-12, atol=1e-12)
    assert "ExactScore of the 40 samples tagged 'train'" in \
        ds.get_brain_info("volume_growth").config.model_description

    res = _run(foo, "flag_high_risk", ds, score_field="volume_growth", rule="top_k", value=6,
               tag="high_risk")
    assert res.result == {"flagged": 6}
    top = set(np.array(ids)[np.argsort(-want, kind="stable")[:6]])
    assert set(ds.match_tags("high_risk").values("id")) == top or \
        sorted(want)[-6] == sorted(want)[-7]  # only a tie at the cut could differ

    res = _run(foo, "dedupe", ds, threshold=0.0, query_tag="", keep="first",
               score_field="volume_growth", tag="duplicate")
    assert res.result == {"groups": 0, "tagged": 0}  # no two digits images are identical here

    res = _run(foo, "export_clean", ds, export_dir=str(tmp_path / "out"), exclude_tags=["high_risk"],
               dataset_type="ImageClassificationDirectoryTree", label_field="ground_truth")
    assert res.result == {"exported": 74}
    assert len(list((tmp_path / "out").rglob("*.png"))) == 74

    # The panel's histogram is numpy's histogram of the stored scores.
    res = foo.execute_operator(URI + "score_histogram", ctx=dict(
        dataset=ds, params=dict(__method__="on_load", panel_id="p1", state={})))
    data = [r for r in res.to_json()["executor"]["requests"] if r["operator_uri"] == "patch_panel_data"]
    hist = data[0]["params"]["data"]["histogram"][0]
    counts, edges = np.histogram(want, bins=30)
    assert hist["y"] == counts.tolist()
    np.testing.assert_allclose(hist["x"], (edges[1:] + edges[:-1]) / 2)


@pytest.mark.parametrize("kind", curate.scores.names())
def test_every_registered_score_from_the_operator_equals_the_python_api(foo, digits_ds, train_model, kind):
    """compute_score's form and execute() are generated from the registry: each kind's
    operator run stores exactly what curate.brain.compute_score stores."""
    import curate.brain as cb

    ds = digits_ds.match_tags("test").limit(12)
    k = curate.scores.get(kind)
    settings = {"steps": 2} if "steps" in k.defaults() else {}
    # The form offers every setting of the chosen kind, with its default.
    props = _form(foo, "compute_score", digits_ds, score=kind)["type"]["properties"]
    for prm in k.params:
        assert props[prm.name]["default"] == prm.default
    res = foo.execute_operator(URI + "compute_score", ctx=dict(
        view=ds,
        params=dict(score=kind, score_field="by_op", model="exact", train_tag="train", batch_size=5, **settings)))
    assert res.error is None, res.error
    assert res.result == {"scored": 12, "failed": 0, "skipped": 0}
    cb.compute_score(ds, train_model, kind, score_field="by_api", batch_size=7, progress=False, **settings)
    got, want = ds.values("by_op"), ds.values("by_api")
    # Other batch sizes (5 vs 7): equal up to float64 summation order in the batched matmuls.
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert digits_ds.get_brain_info("by_op").config.score == kind


def test_denoising_score_from_operator_and_cli(foo, fo, digits_ds, train_model, capsys):
    """The operator and `curate score --score denoising_score` store -denoising_loss of the loader's images."""
    from curate.evaluate import denoising_loss

    ds = digits_ds
    res = _run(foo, "compute_score", ds, score="denoising_score", score_field="dn", model="exact",
               train_tag="train", t=0.02, draws=2, batch_size=16)
    assert res.result == {"scored": 80, "failed": 0, "skipped": 0}
    ids, images, _ = load_images(ds, num_workers=0)
    want = (-denoising_loss(train_model, images, t=0.02, draws=2)).numpy()
    got = dict(zip(*ds.values(["id", "dn"])))
    np.testing.assert_allclose([got[i] for i in ids], want, rtol=1e-6)
    assert ds.get_brain_info("dn").config.t == 0.02

    ds.persistent = True
    try:
        assert cli(["score", "--dataset", ds.name, "--exact-score", "--score", "denoising_score",
                    "--no-progress"]) == 0
        assert "denoising_score: scored 80, failed 0" in capsys.readouterr().out
        ds.reload()
        want = (-denoising_loss(train_model, images)).numpy()
        got = dict(zip(*ds.values(["id", "denoising_score"])))
        np.testing.assert_allclose([got[i] for i in ids], want, rtol=1e-6)
        with pytest.raises(SystemExit, match="no generation log-probability"):
            cli(["score", "--dataset", ds.name, "--exact-score", "--score", "denoising_score",
                 "--logp-field", "lp"])
        with pytest.raises(SystemExit, match="--steps is not a setting of --score denoising_score"):
            cli(["score", "--dataset", ds.name, "--exact-score", "--score", "denoising_score", "--steps", "3"])
    finally:
        ds.persistent = False


def test_cli_score_flag_dedupe_export(fo, digits_ds, train_model, tmp_path, capsys):
    name = digits_ds.name
    digits_ds.persistent = True
    try:
        assert cli(["score", "--dataset", name, "--exact-score", "--score", "volume_growth", "--steps", "2",
                    "--no-progress"]) == 0
        assert "scored 80, failed 0" in capsys.readouterr().out
        digits_ds.reload()
        ids, images, _ = load_images(digits_ds, num_workers=0)
        want = curate.track_volume_growth(train_model, images, steps=2, dtype=torch.float64,
                                          divergence=None).log_growth.numpy()
        got = dict(zip(*digits_ds.values(["id", "volume_growth"])))
        np.testing.assert_allclose([got[i] for i in ids], want, rtol=1e-12, atol=1e-12)
        with pytest.raises(SystemExit, match="other settings"):
            cli(["score", "--dataset", name, "--exact-score", "--score", "volume_growth", "--steps", "3", "--no-progress"])
        assert cli(["flag", "--dataset", name, "--field", "volume_growth", "--percentile", "90"]) == 0
        n_flag = int((want >= np.percentile(want, 90)).sum())
        assert f"tagged {n_flag} sample(s)" in capsys.readouterr().out
        assert cli(["dedupe", "--dataset", name, "--field", "volume_growth", "--threshold", "0.05"]) == 0
        out = tmp_path / "clean"
        assert cli(["export", "--dataset", name, "--export-dir", str(out),
                    "--exclude-tags", "high_risk", "duplicate"]) == 0
        digits_ds.reload()
        kept = digits_ds.match_tags(["high_risk", "duplicate"], bool=False).count()
        assert len(list(out.rglob("*.png"))) == kept
        with pytest.raises(SystemExit, match="not empty"):
            cli(["export", "--dataset", name, "--export-dir", str(out)])
        with pytest.raises(SystemExit, match="no FiftyOne dataset"):
            cli(["flag", "--dataset", "no-such-dataset", "--top-k", "1"])
    finally:
        digits_ds.persistent = False


def test_plugin_install_is_found_by_fiftyone(fo, tmp_path, monkeypatch, capsys):
    target = tmp_path / "plugins"
    assert cli(["plugin", "install", "--plugins-dir", str(target)]) == 0
    assert (target / "curate" / "fiftyone.yml").is_file()
    # the whole folder, every module of the plugin (the package's __init__.py imports them)
    assert sorted(p.name for p in (target / "curate").iterdir()) == sorted(
        p.name for p in (PLUGINS / "curate").iterdir() if p.name != "__pycache__")
    monkeypatch.setattr(fo.config, "plugins_dir", str(target))
    import fiftyone.plugins as fop

    names = [p.name for p in fop.list_plugins(enabled="all")]
    assert "@curate/curate" in names
    defn = fop.get_plugin("@curate/curate")
    assert set(defn.operators) == {"compute_score", "flag_high_risk", "dedupe", "compute_reproductions",
                                   "export_clean", "score_histogram", "score_vs_copies"}  # panels included


def test_a_toy_score_registered_in_one_place_runs_through_the_cli(fo, digits_ds, capsys):
    """Adding a score = one ScoreKind + register(): the CLI offers it (with its setting) and
    stores it as a brain run; here the mean pixel times a factor, a value the test computes."""
    from curate import scores

    def scorer(model, images, *, seed, device, progress=False, factor):
        return scores.Scored(factor * images.to(torch.float64).flatten(1).mean(1))

    toy = scores.register(scores.ScoreKind(
        name="toy_brightness", summary="factor x mean pixel", source="a test", scorer=scorer,
        params=(scores.Param("factor", 1.0, "a multiplier", low=0.0),), nfe=lambda dim, p, m: 0.0))
    ds = digits_ds
    ds.persistent = True
    try:
        assert "toy_brightness" in scores.names()
        assert cli(["score", "--dataset", ds.name, "--exact-score", "--score", "toy_brightness",
                    "--factor", "2.5", "--no-progress"]) == 0
        assert "toy_brightness: scored 80, failed 0" in capsys.readouterr().out
        ds.reload()
        ids, images, _ = load_images(ds, num_workers=0)
        got = dict(zip(*ds.values(["id", "toy_brightness"])))
        np.testing.assert_allclose([got[i] for i in ids], 2.5 * images.double().flatten(1).mean(1).numpy(),
                                   rtol=1e-12)
        info = ds.get_brain_info("toy_brightness")
        assert info.config.factor == 2.5 and info.config.method == "curate_toy_brightness"
        assert "toy_brightness" in curate.brain.list_runs(ds)
        with pytest.raises(SystemExit, match="factor must be a number >= 0"):
            cli(["score", "--dataset", ds.name, "--exact-score", "--score", "toy_brightness",
                 "--factor", "-1", "--field", "other"])
    finally:
        ds.persistent = False
        scores.unregister(toy.name)
