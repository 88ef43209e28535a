"""Concurrency: two runs with different fields at once; two torchrun ranks sharing one view."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import assert_scores_equal, reference_scores, stored

HERE = Path(__file__).parent


def _summary(out: str) -> dict:
    return json.loads(out.split("SUMMARY ", 1)[1].splitlines()[0])


@pytest.mark.slow
def test_two_runs_different_fields_at_once(digits_ds, train_model, child_env, tmp_path):
    """Three processes register at the same instant: two with different fields (both
    must finish, nothing crossed) and a third claiming the first one's field with other
    settings (exactly one of those two may own the field; the other is refused)."""
    ds = digits_ds
    go = tmp_path / "go"
    cmd = [sys.executable, str(HERE / "_score.py"), ds.name, "--delay", "0.01", "--go-file", str(go)]
    settings = {"a": ("vg_a", 2, 1), "b": ("vg_b", 3, 2), "rival": ("vg_a", 3, 1)}
    procs = {k: subprocess.Popen(cmd + ["--field", f, "--steps", str(t), "--axes", str(n)],
                                 env=child_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, (f, t, n) in settings.items()}
    for p in procs.values():  # every child has done its imports...
        assert p.stdout.readline().strip() == "STARTED", p.stderr.read()[-3000:]
    go.touch()  # ...then all three register their runs at once
    outs = {k: p.communicate(timeout=300) for k, p in procs.items()}
    codes = {k: p.returncode for k, p in procs.items()}
    assert codes["b"] == 0, outs["b"][1][-3000:]
    assert sorted([codes["a"], codes["rival"]]) == [0, 1], (codes, outs["rival"][1][-2000:])
    winner, loser = ("a", "rival") if codes["a"] == 0 else ("rival", "a")
    assert "already holds the results of a run with other settings" in outs[loser][1]
    for k in ("b", winner):
        s = _summary(outs[k][0])
        assert (s["scored"], s["failed"], s["skipped"]) == (40, 0, 0)
    ds.reload()
    assert sorted(ds.list_brain_runs()) == ["vg_a", "vg_b"]
    assert {"vg_a", "vg_a_error", "vg_b", "vg_b_error"} <= set(ds.get_field_schema())
    _, steps_a, axes_a = settings[winner]
    assert ds.get_brain_info("vg_a").config.steps == steps_a and ds.get_brain_info("vg_b").config.axes == 2
    # Nothing crossed: each field equals its own run's reference, and they differ.
    assert_scores_equal(stored(ds, "vg_a"), reference_scores(train_model, ds, steps=steps_a, axes=axes_a))
    assert_scores_equal(stored(ds, "vg_b"), reference_scores(train_model, ds, steps=3, axes=2))
    assert stored(ds, "vg_a") != stored(ds, "vg_b")
    assert ds.load_brain_results("vg_a").scored == 40 and ds.load_brain_results("vg_b").scored == 40


def _torchrun(ds, env, *extra, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "curate", "score", "--shard-by-rank", "--dataset", ds.name, "--exact-score",
           "--score", "volume_growth", "--steps", "2", "--batch-size", "3", "--workers", "0", "--no-progress", *extra]
    return subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_torchrun_two_ranks_share_one_view(digits_ds, train_model, child_env):
    ds = digits_ds
    view_ids = set(ds.match_tags("test").values("id"))
    # First a field some user wrote: both ranks refuse before anything is written.
    ds.set_values("mine", [1.5] * ds.count())
    out = _torchrun(ds, child_env, "--tags", "test", "--field", "mine")
    assert out.returncode != 0
    assert out.stderr.count("no curate scoring run wrote") >= 2, out.stderr[-3000:]
    ds.reload()
    assert ds.values("mine") == [1.5] * 40 and ds.list_brain_runs() == []

    # Then the real run on the test split, sharded over two ranks.
    out = _torchrun(ds, child_env, "--tags", "test")
    assert out.returncode == 0, out.stderr[-4000:]
    lines = re.findall(r"rank (\d)/2: scored (\d+), failed (\d+), already done (\d+) of a shard "
                       r"of (\d+); all ranks: scored (\d+)", out.stdout)
    assert len(lines) == 2, out.stdout
    by_rank = {int(r[0]): [int(v) for v in r[1:]] for r in lines}
    # Each rank scored exactly its shard (10 of the 20 test images); together all 20, once.
    assert by_rank[0] == by_rank[1] == [10, 0, 0, 10, 20]
    ds.reload()
    assert ds.list_brain_runs() == ["volume_growth"]  # registered once
    got = stored(ds)
    assert {k for k, v in got.items() if v is not None} == view_ids  # the train split untouched
    want = reference_scores(train_model, ds.match_tags("test"), steps=2)
    assert_scores_equal({k: got[k] for k in view_ids}, want)
    res = ds.load_brain_results("volume_growth")
    assert (res.scored, res.failed, res.skipped) == (20, 0, 0)


def test_shards_partition_any_view_and_one_process_scores_all(digits_ds, train_model):
    from curate.brain.distributed import score_sharded, shard_ids

    ids = digits_ds.values("id")
    for world in (1, 2, 3, 7):
        shards = [shard_ids(ids, r, world) for r in range(world)]
        assert sorted(sum(shards, [])) == sorted(ids)  # every sample in exactly one shard
        assert all(shard_ids(list(reversed(ids)), r, world) == shards[r] for r in range(world))
    with pytest.raises(ValueError, match="rank 2 outside"):
        shard_ids(ids, 2, 2)
    # Outside torchrun: one process, the whole view, the same values as the tracker.
    r = score_sharded(digits_ds, train_model, "volume_growth", rank=0, world_size=1, steps=2, progress=False)
    assert (r.shard_size, r.scored, r.total_scored, r.resumed) == (40, 40, 40, False)
    assert_scores_equal(stored(digits_ds), reference_scores(train_model, digits_ds, steps=2))
    with pytest.raises(ValueError, match="sigma must be"):  # settings checked on every rank
        score_sharded(digits_ds, train_model, "volume_growth", rank=0, world_size=1, sigma=0, progress=False)
