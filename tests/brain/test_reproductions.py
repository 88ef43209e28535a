"""The reproduction audit end to end on real digits PNGs and a real mongod.

Known answers: the exact score of a set of images reproduces exactly those images, so
with ExactScore(training images) every generated sample is a copy, and with the exact
score of a few training images plus held-out digits only those few training images
can be copied. Counts are checked against find_memorized on the saved PNGs (a second
computation of the same criteria)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import curate.brain as cb
from curate.data.loader import load_images
from curate.memorization import find_memorized
from curate.models.exact import ExactScore
from curate.reproduction import evaluate, wilson_interval

KEY = "reproductions"


def _audit(train, model, tmp_path, n=48, key=KEY, **kw):
    kw.setdefault("steps", 20)
    kw.setdefault("batch_size", 16)
    kw.setdefault("progress", False)
    return cb.compute_reproductions(train, model, n, audit_key=key, out_dir=tmp_path / key, num_workers=0, **kw)


def _fields(samples, key=KEY) -> dict:
    """{field: {id: value}} of every field the audit writes on training samples."""
    cfg = samples._dataset.get_brain_info(key).config
    out = {}
    for f in cfg.train_fields():
        if f in samples._dataset.get_field_schema():
            out[f] = dict(zip(*samples.values(["id", f])))
    return out


def _generated_images(name):
    import fiftyone as fo

    gen = fo.load_dataset(name).exists("nearest_group").sort_by("index")
    ids, images, failed = load_images(gen, num_workers=0)
    assert not failed
    return gen, images


def _partly_copying_model(ds):
    """Exact score of training digits 0..4 and 15 held-out digits: only those 5 can be copied."""
    _, tr, _ = load_images(ds.match_tags("train"), num_workers=0)
    _, te, _ = load_images(ds.match_tags("test"), num_workers=0)
    return ExactScore(torch.cat([tr[:5], te[:15]]).to(torch.float64))


def test_exact_score_copies_every_time(digits_ds, train_model, tmp_path):
    train = digits_ds.match_tags("train")
    s = _audit(train, train_model, tmp_path, n=40)
    assert (s.generated, s.skipped, s.failed, s.train_failed) == (40, 0, 0, 0)
    gen, images = _generated_images(s.generated_dataset)
    assert gen.count() == 40 and all(Path(p).is_file() for p in gen.values("filepath"))
    for c in ("carlini", "gu", "rms", "aligned"):
        assert all(gen.values(f"copy_{c}")), c
        assert sum(train.values(f"{KEY}_{c}")) == 40, c  # the counts add up to the samples
    assert s.copies == 40 and max(gen.values("rms_distance")) == 0.0  # saved pixels = training pixels
    # every generated sample's nearest training image is itself, pixel for pixel
    _, train_images, _ = load_images(train, num_workers=0)
    paths = dict(zip(*train.values(["id", "filepath"])))
    ids_in_order = train.values("id")
    for img, nid, npath in zip(images, gen.values("nearest_id"), gen.values("nearest_filepath")):
        assert torch.equal(img, train_images[ids_in_order.index(nid)]) and paths[nid] == npath
    # the run record and the copies dataset (one group per copy, three slices)
    cfg = digits_ds.get_brain_info(KEY).config
    assert (cfg.num_samples, cfg.steps, cfg.method_name, cfg.seed, cfg.criterion) == (40, 20, "euler", 0, "carlini")
    import fiftyone as fo

    copies = fo.load_dataset(s.copies_dataset)
    assert sorted(copies.group_slices) == ["generated", "pair", "source"]
    assert len(copies.select_group_slices("pair")) == 40


def test_counts_equal_find_memorized_and_find_the_copied_images(digits_ds, tmp_path):
    train = digits_ds.match_tags("train")
    model = _partly_copying_model(digits_ds)
    s = _audit(train, model, tmp_path, n=64)
    gen, images = _generated_images(s.generated_dataset)
    ids, train_images, _ = load_images(train, num_workers=0)
    want = find_memorized(images, train_images)
    stored = _fields(train)
    for c in ("carlini", "gu", "rms"):
        assert [stored[f"{KEY}_{c}"][i] for i in ids] == want.counts(c).tolist(), c
        assert gen.values(f"copy_{c}") == want.memorized(c).tolist(), c
    np.testing.assert_allclose(gen.values("carlini_ratio"), want.carlini_ratio.numpy(), rtol=1e-12)
    # only training digits 0..4 can be copied, and the strict RMS criterion finds them
    # (Carlini's ratio also fires on some held-out digits: over 40 training digits its mean
    # of the 50 nearest is most of the set, see curate.memorization)
    copied = {i for i in ids if stored[f"{KEY}_rms"][i] > 0}
    assert copied and copied <= set(ids[:5])
    assert 0 < sum(gen.values("copy_rms")) < 64  # held-out digits are drawn too and are no copies
    # rate and its Wilson interval
    k = torch.tensor([float(stored[KEY][i]) for i in ids])
    low, high = wilson_interval(k, 64)
    np.testing.assert_allclose([stored[f"{KEY}_rate"][i] for i in ids], (k / 64).numpy())
    np.testing.assert_allclose([stored[f"{KEY}_rate_low"][i] for i in ids], low.numpy())
    np.testing.assert_allclose([stored[f"{KEY}_rate_high"][i] for i in ids], high.numpy())


def test_resume_after_an_interruption_equals_one_run(digits_ds, tmp_path):
    train = digits_ds.match_tags("train")
    model = _partly_copying_model(digits_ds)
    calls = {"n": 0}

    def stop_after_two_blocks(frac, label):
        calls["n"] += 1
        if calls["n"] == 3:  # the bar starts at 0, then one call per block
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _audit(train, model, tmp_path, n=64, progress=stop_after_two_blocks)
    import fiftyone as fo

    cfg = digits_ds.get_brain_info(KEY).config
    assert fo.load_dataset(cfg.generated_dataset).count() == 32  # two blocks of 16 stored
    s = _audit(train, model, tmp_path, n=64)
    assert (s.generated, s.skipped, s.resumed) == (32, 32, True)
    one = _audit(train, model, tmp_path, n=64, key="again")
    assert (one.generated, one.skipped) == (64, 0)
    a, b = _fields(train), _fields(train, "again")
    for f, v in a.items():
        assert v == b["again" + f[len(KEY):]], f
    ga, gb = (fo.load_dataset(x).sort_by("index") for x in (s.generated_dataset, one.generated_dataset))
    for f in ("nearest_id", "carlini_ratio", "aligned_distance", "copy"):
        assert ga.values(f) == gb.values(f), f
    # same settings again: nothing to do; other settings: refused, nothing lost
    again = _audit(train, model, tmp_path, n=64)
    assert (again.generated, again.skipped) == (0, 64)
    with pytest.raises(ValueError, match="other settings.*num_samples"):
        _audit(train, model, tmp_path, n=80)
    assert _fields(train) == a


def test_delete_removes_everything(digits_ds, train_model, tmp_path):
    import fiftyone as fo

    train = digits_ds.match_tags("train")
    s = _audit(train, train_model, tmp_path, n=16)
    out = Path(digits_ds.get_brain_info(KEY).config.out_dir)
    assert any(out.glob("generated_*.png")) and fo.dataset_exists(s.generated_dataset)
    digits_ds.delete_brain_run(KEY)
    schema = digits_ds.get_field_schema()
    assert not [f for f in schema if f.startswith(KEY)]
    assert not fo.dataset_exists(s.generated_dataset) and not fo.dataset_exists(s.copies_dataset)
    assert not out.exists()


def test_evaluate_score(digits_ds, tmp_path):
    train = digits_ds.match_tags("train")
    model = _partly_copying_model(digits_ds)
    s = _audit(train, model, tmp_path, n=64)
    cb.compute_denoising_score(train, model, batch_size=32, progress=False)
    # the strict RMS criterion: only the model's five training digits are copies (Carlini's
    # ratio also fires on held-out digits among 40 training digits)
    ev = cb.evaluate_score(train, None, KEY, criterion="rms")  # None: the default score kind's field
    # a second computation from the stored fields with the core alone
    import fiftyone as fo

    gen = fo.load_dataset(s.generated_dataset)
    idx, near, copy = gen.values(["index", "nearest_group", "copy_rms"])
    groups = train.values(f"{KEY}_group")
    score = dict(zip(groups, train.values("denoising_score")))
    g = max(groups) + 1
    a = np.bincount([n for i, n, c in zip(idx, near, copy) if c and i % 2 == 0], minlength=g)
    b = np.bincount([n for i, n, c in zip(idx, near, copy) if c and i % 2 == 1], minlength=g)
    ref = evaluate(np.array([score[k] for k in range(g)]), a, b, 32, 32)
    assert ev.to_dict() == ref.to_dict()
    assert ev.n_reproduced > 0 and not math.isnan(ev.auroc)
    # the exact score's denoising score ranks its five training digits first
    assert ev.auroc == 1.0
    p = dict(zip(*train.values(["id", "p_reproduce"])))
    assert all(0 <= v <= 1 for v in p.values())
    assert digits_ds.load_brain_results(KEY).evaluations["denoising_score:rms"]["auroc"] == 1.0
    digits_ds.delete_brain_run(KEY)
    assert "p_reproduce" not in digits_ds.get_field_schema()


class _NanModel(ExactScore):
    def eps(self, x, t):
        return torch.full_like(x, math.nan)


class _Sixteen(ExactScore):
    image_shape = (1, 16, 16)


def test_bad_input_is_refused_before_writing(digits_ds, train_model, tmp_path):
    import fiftyone as fo

    train = digits_ds.match_tags("train")
    y = train_model.y.reshape(-1, 1, 8, 8)
    cases = [(dict(model=_NanModel(y)), "NaN/Inf"), (dict(criterion="nope"), "criterion"),
             (dict(num_samples=0), "num_samples"), (dict(audit_key="a.b"), "audit_key"),
             (dict(train=digits_ds.match_tags("nothing")), "empty"),
             (dict(model=_Sixteen(torch.zeros(2, 1, 16, 16, dtype=torch.float64))), "16x16")]
    for kw, msg in cases:
        args = dict(train=train, model=train_model, num_samples=16)
        args.update(kw)
        with pytest.raises(ValueError, match=msg):
            cb.compute_reproductions(args.pop("train"), args.pop("model"), args.pop("num_samples"),
                                     out_dir=tmp_path / "bad", progress=False, num_workers=0, **args)
    assert not digits_ds.list_brain_runs() and not [f for f in digits_ds.get_field_schema() if f.startswith(KEY)]
    assert not (tmp_path / "bad").exists()
    assert not [n for n in fo.list_datasets() if n.startswith(digits_ds.name + "-")]


def test_missing_training_file_is_a_recorded_failure(digits_ds, train_model, tmp_path):
    train = digits_ds.match_tags("train")
    gone = train.first()
    Path(gone.filepath).unlink()
    s = _audit(train, train_model, tmp_path, n=16)
    assert s.train_failed == 1
    errors = {k: v for k, v in zip(*train.values(["id", f"{KEY}_error"])) if v}
    assert list(errors) == [gone.id] and "No such file" in errors[gone.id]
    assert train.select(gone.id).first()[KEY] is None
    assert sum(v for v in train.values(KEY) if v is not None) == 16  # the others still add up


def test_app_operator_runs_the_audit(digits_ds, foo, tmp_path):
    """The App's form calls the library: the exact score of the train split, audited over
    the whole dataset; held-out digits are never copied."""
    from _plugin import run_operator

    import fiftyone as fo

    old = fo.config.default_dataset_dir
    fo.config.default_dataset_dir = str(tmp_path / "fo")  # where the PNGs go by default
    try:
        res = run_operator(foo, "compute_reproductions", digits_ds, model="exact", train_tag="train",
                           num_samples=16, steps=20, batch_size=8)
    finally:
        fo.config.default_dataset_dir = old
    assert res.result["generated"] == 16 and res.result["copies"] == 16
    assert sum(digits_ds.match_tags("train").values(KEY)) == 16
    assert set(digits_ds.match_tags("test").values(KEY)) == {0}
    cfg = digits_ds.get_brain_info(KEY).config
    assert (cfg.num_samples, cfg.steps, cfg.block_size) == (16, 20, 8)


def test_cli_audit_and_report(digits_ds, train_model, tmp_path, capsys):
    from curate.cli import main

    train = digits_ds.match_tags("train")
    cb.compute_denoising_score(train, train_model, batch_size=40, progress=False)
    argv = ["audit", "--dataset", digits_ds.name, "--exact-score", "--samples", "16", "--steps", "20",
            "--batch-size", "8", "--out-dir", str(tmp_path / "cli"), "--workers", "0", "--no-progress",
            "--criterion", "rms", "--evaluate", "--plot", str(tmp_path / "plot.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "generated 16 (already done 0" in out and "16 copies (rms)" in out
    assert "noise ceiling: AUROC" in out and (tmp_path / "plot.png").stat().st_size > 0
    assert sum(train.values(KEY)) == 16 and set(digits_ds.match_tags("test").values(KEY)) == {None}
    ev = digits_ds.load_brain_results(KEY).evaluations["denoising_score:rms"]
    assert ev["n_reproduced"] == sum(v > 0 for v in train.values(KEY))
    assert main(argv) == 0  # again: resumes, nothing to draw
    assert "generated 0 (already done 16" in capsys.readouterr().out


def test_panel_plots_a_score_against_the_copies(digits_ds, foo, tmp_path):
    from _plugin import URI

    train = digits_ds.match_tags("train")
    model = _partly_copying_model(digits_ds)
    _audit(train, model, tmp_path, n=32)
    cb.compute_denoising_score(train, model, batch_size=40, progress=False)
    res = foo.execute_operator(URI + "score_vs_copies", ctx=dict(
        dataset=digits_ds, params=dict(__method__="on_load", panel_id="p2", state={})))
    assert res.error is None, res.error
    reqs = res.to_json()["executor"]["requests"]
    data = [r["params"]["data"] for r in reqs if r["operator_uri"] == "patch_panel_data"][0]["scatter"][0]
    # one point per unique training image: its score and its copies, as stored
    want = {g: (s, c) for g, s, c in zip(*train.values([f"{KEY}_group", "denoising_score", KEY]))}
    assert sorted(zip(data["x"], data["y"])) == sorted(want.values())
    assert sum(data["y"]) == sum(train.values(KEY))
