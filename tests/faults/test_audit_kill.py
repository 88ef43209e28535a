"""SIGKILL an audit at random points (while sampling, and while writing the counts), then
resume: the fields and the generated samples equal one uninterrupted run's."""
import random
import subprocess
import sys
from pathlib import Path

import pytest

from _audit import audit, model_of
from _helpers import sigkill_when

HERE = Path(__file__).parent
N = 64
KEY = "reproductions"
GEN_FIELDS = ("nearest_id", "nearest_group", "rms_distance", "carlini_ratio", "gu_ratio", "copy_carlini",
              "copy_gu", "copy_rms", "aligned_distance", "aligned_nearest_id", "copy_aligned", "copy")


def _generated(fo, name) -> dict:
    """{index: (fields...)} of the stored generated samples."""
    if not fo.dataset_exists(name):
        return {}
    ds = fo.load_dataset(name)
    ds.reload()
    if "copy" not in ds.get_field_schema():  # created, fields not declared yet
        return {}
    rows = ds.values(["index", *GEN_FIELDS])
    return {r[0]: r[1:] for r in zip(*rows)}


def _train_fields(ds, key) -> dict:
    ds.reload()
    cfg = ds.get_brain_info(key).config
    return {f[len(key):]: dict(zip(*ds.values(["id", f]))) for f in cfg.train_fields()}


def _kill_at_random_point(fo, ds, out_dir, env, rng, gen_name) -> tuple[int, bool]:
    """Start an audit child; SIGKILL it once k generated samples (random, up to all N:
    then it dies while writing the counts) are stored, after a random extra delay."""
    k = rng.choice([rng.randrange(0, N), N])
    jitter = rng.uniform(0.0, 0.3)
    child = subprocess.Popen([sys.executable, str(HERE / "_audit.py"), ds.name, str(out_dir), "--delay", "0.01"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "STARTED", child.stderr.read()[-3000:]

    def reached():
        return len(_generated(fo, gen_name)) >= k

    killed = sigkill_when(child, reached, jitter, interval=0.02)
    return len(_generated(fo, gen_name)), killed


@pytest.mark.slow
def test_sigkill_audit_at_random_points_then_resume(digits_ds, fo, child_env, tmp_path):
    ds = digits_ds
    # the answer of one uninterrupted run, in this process, under another key
    want = audit(ds, model_of(ds), tmp_path / "reference", key="reference", samples=N)
    assert want.generated == N
    want_gen = _generated(fo, want.generated_dataset)
    want_fields = _train_fields(ds, "reference")
    gen_name = f"{ds.name}-{KEY}-generated"
    history = []
    for seed in (1, 2, 3, 4):
        n, killed = _kill_at_random_point(fo, ds, tmp_path / "run", child_env, random.Random(seed), gen_name)
        history.append((seed, n, killed))
        # whatever a killed process stored is right: every stored sample equals the reference's
        got = _generated(fo, gen_name)
        assert all(got[i] == want_gen[i] for i in got), history
    print("KILL HISTORY", history)
    assert any(killed and 0 < n < N for _, n, killed in history), history  # a real mid-run kill

    s = audit(ds, model_of(ds), tmp_path / "run", key=KEY, samples=N)
    assert s.generated + s.skipped == N and s.resumed
    assert _generated(fo, gen_name) == want_gen
    assert _train_fields(ds, KEY) == want_fields  # identical to one uninterrupted run
    assert ds.load_brain_results(KEY).complete
    assert sorted(p.name for p in (tmp_path / "run").glob("generated_*.png")) == \
        sorted(p.name for p in (tmp_path / "reference").glob("generated_*.png"))
    assert not list((tmp_path / "run").glob("*.tmp"))


@pytest.mark.slow
def test_torchrun_two_ranks_audit_like_one_process(digits_ds, fo, child_env, tmp_path):
    """Two torchrun ranks sample every other block into one generated dataset; rank 0
    writes the counts: the same fields as one process."""
    from curate.brain import compute_reproductions
    from curate.brain.model_source import exact_score_of

    ds = digits_ds
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "curate",
           "audit", "--shard-by-rank", "--dataset", ds.name, "--exact-score", "--samples", "32", "--steps", "10",
           "--batch-size", "8", "--out-dir", str(tmp_path / "ranks"), "--workers", "0", "--no-progress"]
    out = subprocess.run(cmd, env=dict(child_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, "\n".join(x for x in out.stderr.splitlines() if "rank" not in x)[-3000:]
    assert out.stdout.count("reproductions: generated 32 (already done 0") == 2, out.stdout  # both ranks' total
    ds.reload()
    want = compute_reproductions(ds.match_tags("train"), exact_score_of(ds), 32, audit_key="one", steps=10,
                                 batch_size=8, out_dir=tmp_path / "one", num_workers=0, progress=False)
    assert want.generated == 32
    assert _train_fields(ds, KEY) == _train_fields(ds, "one")
    assert _generated(fo, f"{ds.name}-{KEY}-generated") == _generated(fo, want.generated_dataset)
