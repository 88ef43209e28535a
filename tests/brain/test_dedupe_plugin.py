"""The App plugin's dedupe operator (descriptor and pixel) and the score histogram panel
(any float field, its top images), through fiftyone.operators.execute_operator."""
from urllib.parse import quote

import numpy as np
import pytest
from test_dedupe_descriptor import EDITS, _items, photos_ds  # noqa: F401 (the fixture)

from _plugin import URI, run_operator as _run


def test_dedupe_operator_descriptor_and_pixel(foo, photos_ds):
    ds = photos_ds
    res = _run(foo, "dedupe", ds, method="descriptor", threshold=0.2, mirror=False, brain_key="dd_op",
               query_tag="", keep="first", score_field="volume_growth", tag="duplicate")
    assert res.result == {"groups": len(EDITS) - 1, "tagged": len(EDITS) - 1}  # the mirrored copy stays
    assert ds.list_brain_runs() == ["dd_op"] and ds.get_brain_info("dd_op").config.curate_dedupe["mirror"] is False
    assert ds.get_brain_info("dd_op").config.curate_dedupe["verifier"] is False
    res = _run(foo, "dedupe", ds, method="descriptor", threshold=0.2, mirror=False, brain_key="dd_op", verifier=True,
               query_tag="", keep="first", score_field="volume_growth", tag="duplicate")
    assert ds.get_brain_info("dd_op").config.curate_dedupe["verifier"] is True  # the form's switch reaches dedupe
    assert res.result["groups"] >= len(EDITS) - 1
    # the embedding switch reaches dedupe; a verifier switch left on with it off is not passed on
    _run(foo, "dedupe", ds, method="descriptor", threshold=0.2, mirror=False, brain_key="dd_op", embedding=False,
         verifier=True, query_tag="", keep="first", score_field="volume_growth", tag="duplicate")
    cfg = ds.get_brain_info("dd_op").config.curate_dedupe
    assert cfg["embedding"] is False and cfg["verifier"] is False
    res = _run(foo, "dedupe", ds, query_tag="", keep="first", score_field="volume_growth")  # defaults
    assert res.result == {"groups": len(EDITS), "tagged": len(EDITS)}
    assert sorted(ds.list_brain_runs()) == ["dd_op", "dedupe"]
    res = _run(foo, "dedupe", ds, method="pixel", threshold=0.0, query_tag="", keep="first",
               score_field="volume_growth")
    assert res.result == {"groups": 0, "tagged": 0}  # no exact copies among them


def test_dedupe_form_follows_the_method(foo, photos_ds):
    ops = foo.list_operators()
    op = next(o for o in ops if o.uri == URI + "dedupe")
    from fiftyone.operators.executor import ExecutionContext

    from curate.duplicates.choices import DEFAULT_EMBEDDING, DEFAULT_VERIFIER

    described = {"mirror", "brain_key", "embedding", "verifier"}
    for method, want, absent in (("descriptor", described, set()), ("pixel", set(), described)):
        ctx = ExecutionContext(request_params={"dataset_name": photos_ds.name, "params": {"method": method}})
        props = op.resolve_input(ctx).type.properties
        assert want <= set(props) and not (absent & set(props))
        assert props["threshold"].default == {"descriptor": 0.2, "pixel": 0.1}[method]
        if method == "descriptor":  # the App offers the API's defaults
            assert props["verifier"].default is DEFAULT_VERIFIER is False
            assert props["embedding"].default is DEFAULT_EMBEDDING is True
    # the verifier needs the embedding: with the embedding off the form does not offer it
    ctx = ExecutionContext(request_params={"dataset_name": photos_ds.name,
                                           "params": {"method": "descriptor", "embedding": False}})
    props = op.resolve_input(ctx).type.properties
    assert "embedding" in props and "verifier" not in props


def _panel(foo, ds, method, state, **params):
    res = foo.execute_operator(URI + "score_histogram", ctx=dict(
        dataset=ds, params=dict(__method__=method, panel_id="p1", state=state, **params)))
    assert res.error is None, res.error
    reqs = res.to_json()["executor"]["requests"]
    data = [r["params"]["data"] for r in reqs if r["operator_uri"] == "patch_panel_data"]
    st = {}
    for r in reqs:
        if r["operator_uri"] == "patch_panel_state":
            st.update(r["params"]["state"])
    return data, st


def test_panel_shows_any_score_field_and_its_top_images(foo, photos_ds):
    ds = photos_ds
    rng = np.random.default_rng(4)
    other = {sid: float(v) for sid, v in zip(ds.values("id"), rng.normal(size=len(ds)))}
    ds.set_values("other_score", other, key_field="id")
    # without the default kind's field (denoising_score) it opens on the first float field
    data, st = _panel(foo, ds, "on_load", {})
    assert st["score_field"] == "other_score"
    ds.set_values("denoising_score", [-v for v in ds.values("volume_growth")])
    data, st = _panel(foo, ds, "on_load", {})
    dn = np.array(ds.values("denoising_score"))
    assert st["score_field"] == "denoising_score"
    assert data[0]["histogram"][0]["y"] == np.histogram(dn, bins=30)[0].tolist()
    # pick another field: its histogram and its top images
    data, st = _panel(foo, ds, "on_change_field", {"score_field": "volume_growth"}, value="other_score")
    vals = np.array(list(other.values()))
    counts, edges = np.histogram(vals, bins=30)
    assert st["score_field"] == "other_score"
    assert data[0]["histogram"][0]["y"] == counts.tolist()
    np.testing.assert_allclose(data[0]["histogram"][0]["x"], (edges[1:] + edges[:-1]) / 2)
    by_value = sorted(other, key=other.get, reverse=True)[:8]
    assert st["top_ids"] == by_value
    path = dict(zip(*ds.values(["id", "filepath"])))
    assert [st[f"top_{i}"] for i in range(8)] == [f"/media?filepath={quote(path[s], safe='')}" for s in by_value]


def test_cli_dedupe_options(photos_ds, capsys):
    from curate.cli import main as cli

    ds = photos_ds
    ds.persistent = True
    try:
        base = ["dedupe", "--dataset", ds.name, "--query-tag", "", "--keep", "first", "--no-progress"]
        assert cli(base + ["--no-mirror", "--brain-key", "cli_idx"]) == 0
        assert f"{len(EDITS) - 1} group(s); tagged {len(EDITS) - 1} sample(s)" in capsys.readouterr().out
        ds.reload()
        assert ds.list_brain_runs() == ["cli_idx"]
        assert cli(base) == 0  # mirroring on by default
        assert f"{len(EDITS)} group(s)" in capsys.readouterr().out
        ds.reload()
        assert [2, 32] in _items(ds, [[s for s in ds.match(__import__("fiftyone").ViewField("duplicate_group") == g)
                                       .values("id")] for g in range(len(EDITS))])
        assert cli(base + ["--method", "pixel", "--threshold", "0"]) == 0
        assert "0 group(s)" in capsys.readouterr().out
        with pytest.raises(SystemExit, match="k must"):
            cli(base + ["--k", "0"])
    finally:
        ds.persistent = False
