"""Kill a recipe (overfit_check and clean_digits, smoke presets) at random points; the
rerun skips the finished stages, redoes the interrupted one, and ends with the results
of an uninterrupted run."""
import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch

from _helpers import sigkill_when

TIMING = {"seconds", "cpu_seconds", "time", "elapsed", "wall_seconds"}


def _strip(obj):
    """The JSON without wall-clock figures (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING and "seconds" not in k}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _markers(folder):
    return sorted(p.name for p in folder.glob("*.done.json"))


def _results(folder):
    from safetensors.torch import load_file

    out = {p.name: _strip(json.loads(p.read_text())) for p in folder.glob("*.done.json")}
    out["results.json"] = _strip(json.loads((folder / "results.json").read_text()))
    tensors = {p.name: load_file(str(p)) for p in folder.glob("scores_*.safetensors")}
    return out, tensors


@pytest.mark.slow
def test_sigkill_recipe_at_random_points_then_resume(tmp_path, child_env):
    from curate.recipes import overfit_check

    out = tmp_path / "killed"
    args = ["--config", "smoke", "--out"]
    cmd = [sys.executable, "-m", "curate.recipes.overfit_check", *args, str(out)]
    history = []
    for seed in (8, 9):
        rng = random.Random(seed)
        target = len(_markers(out)) + rng.randint(1, 3)
        jitter = rng.uniform(0.0, 0.5)
        child = subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = sigkill_when(child, lambda: len(_markers(out)) >= target, jitter)
        history.append((seed, _markers(out), killed))
    print("RECIPE KILL HISTORY", history)
    assert any(k for _, _, k in history), history
    done_before = {m: (out / m).read_text() for m in _markers(out)}

    overfit_check.main(args + [str(out)])  # resume in this process
    for m, text in done_before.items():  # finished stages were not redone
        assert (out / m).read_text() == text, m
    overfit_check.main(args + [str(tmp_path / "straight")])  # one uninterrupted run
    got, got_t = _results(out)
    want, want_t = _results(tmp_path / "straight")
    assert got.keys() == want.keys() and got_t.keys() == want_t.keys()
    for name in want:
        assert got[name] == want[name], (name, history)
    for name in want_t:
        for k in want_t[name]:
            assert torch.equal(got_t[name][k], want_t[name][k]), (name, k, history)


def _clean_results(folder) -> dict:
    """A clean run's stage markers and results.json, its folder and dataset names written
    as placeholders (two run folders differ in nothing else)."""
    name = json.loads((folder / "dataset.done.json").read_text())["dataset_name"]

    def load(p):
        text = p.read_text().replace(str(folder.resolve()), "<run>").replace(str(folder), "<run>")
        return _strip(json.loads(text.replace(name, "<dataset>")))

    out = {p.name: load(p) for p in folder.glob("*.done.json")}
    out["results.json"] = load(folder / "results.json")
    return out


@pytest.mark.slow
@pytest.mark.heavy(minutes=2)
def test_sigkill_clean_recipe_at_random_points_then_resume(tmp_path, child_env):
    """clean_digits (smoke, four arms): killed anywhere, a rerun finishes the same run --
    the same tags, exported arm, models, samples and memorized counts as a run never killed."""
    from safetensors.torch import load_file

    from curate.recipes import clean_digits

    out = tmp_path / "killed"
    args = ["--config", "smoke", "--out"]
    cmd = [sys.executable, "-m", "curate.recipes.clean_digits", *args, str(out)]
    history = []
    for seed in (3, 4, 5):
        rng = random.Random(seed)
        target = len(_markers(out)) + rng.randint(1, 5)
        jitter = rng.uniform(0.0, 2.0)  # lands inside a stage (training, dedupe, export) as often as between
        child = subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = sigkill_when(child, lambda: len(_markers(out)) >= target, jitter, timeout=300)
        history.append((seed, _markers(out), killed))
    print("CLEAN RECIPE KILL HISTORY", history)
    assert any(k for _, _, k in history), history
    done_before = {m: (out / m).read_text() for m in _markers(out)}

    clean_digits.main(args + [str(out)])  # resume in this process
    for m, text in done_before.items():  # finished stages were not redone
        assert (out / m).read_text() == text, m
    names = ["dataset", "train_baseline_s0", "score", "clean", "memorization"] + [
        f"{st}_{arm}_s0" for arm in ("dedupe", "dedupe_score", "dedupe_random") for st in ("train", "sample")
    ] + ["sample_baseline_s0"]
    assert _markers(out) == sorted(f"{n}.done.json" for n in names)
    clean_digits.main(args + [str(tmp_path / "straight")])  # one uninterrupted run
    got, want = _clean_results(out), _clean_results(tmp_path / "straight")
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], (name, history)
    # A stage killed after its last write but before its marker: rerunning it writes the same
    # record (the score stage then finds every sample scored and must still say so).
    (tmp_path / "straight" / "score.done.json").unlink()
    clean_digits.main(args + [str(tmp_path / "straight")])
    assert _clean_results(tmp_path / "straight") == want
    for p in (tmp_path / "straight" / "samples").glob("*.safetensors"):
        assert torch.equal(load_file(str(out / "samples" / p.name))["samples"], load_file(str(p))["samples"]), p.name


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    from pathlib import Path

    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _workers_of(pid: int) -> list[int]:
    """The multiprocessing workers ``pid`` spawned (not its resource tracker)."""
    from pathlib import Path

    def cmdline(p):
        try:
            return Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            return b""
    return [p for p in _children(pid) if b"spawn_main" in cmdline(p)]


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes die with the recipe on Linux only")
def test_workers_die_with_a_killed_recipe(tmp_path, child_env):
    """clean_digits with ``workers = 2``, SIGKILLed while its workers train long models: the
    workers die within seconds (none may keep writing checkpoints into the folder a rerun
    trains into), not when their trainings would have ended."""
    import time

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "curate.recipes.clean_digits", "--config", "smoke", "--set", "workers=2",
           "--set", "model.steps=100000", "--set", "seeds=[0, 1]", "--out", str(out)]  # two baselines at once
    with open(tmp_path / "log.txt", "w") as log:  # not a pipe: an orphan would hold it open
        child = subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    workers: list[int] = []

    def both_training() -> bool:
        workers[:] = _workers_of(child.pid)
        return len(workers) == 2 and (out / "models" / "baseline_s0").exists()

    killed = sigkill_when(child, both_training, 3.0, timeout=300)
    assert killed and len(workers) == 2, (tmp_path / "log.txt").read_text()[-3000:]
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    alive = [p for p in workers if _alive(p)]
    for p in alive:  # clean up before failing
        os.kill(p, signal.SIGKILL)
    assert not alive, "a worker outlived the killed recipe"


@pytest.mark.slow
@pytest.mark.heavy(minutes=2)
def test_sigkill_clean_recipe_with_workers_then_resume(tmp_path, child_env):
    """clean_digits (smoke) with ``workers = 2``, killed while its workers train the arms: the
    rerun ends with the markers, results and samples of an uninterrupted run in one process."""
    from safetensors.torch import load_file

    from curate.recipes import clean_digits

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "curate.recipes.clean_digits", "--config", "smoke", "--set", "workers=2", "--out", str(out)]
    with open(tmp_path / "log.txt", "w") as log:
        child = subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    training = lambda: (out / "clean.done.json").exists() and bool(_workers_of(child.pid))  # noqa: E731
    assert sigkill_when(child, training, 1.0, timeout=300), (tmp_path / "log.txt").read_text()[-3000:]
    assert not (out / "memorization.done.json").exists()

    clean_digits.main(["--config", "smoke", "--set", "workers=2", "--out", str(out)])  # resume
    clean_digits.main(["--config", "smoke", "--out", str(tmp_path / "straight")])  # workers = 1
    got, want = _clean_results(out), _clean_results(tmp_path / "straight")
    assert (got["results.json"]["config"].pop("workers"), want["results.json"]["config"].pop("workers")) == (2, 1)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name
    for p in (tmp_path / "straight" / "samples").glob("*.safetensors"):
        assert torch.equal(load_file(str(out / "samples" / p.name))["samples"], load_file(str(p))["samples"]), p.name
