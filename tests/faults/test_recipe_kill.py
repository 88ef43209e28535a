"""Kill a recipe (overfit_check, smoke preset) at random points; the rerun skips the
finished stages, redoes the interrupted one, and ends with the results of an
uninterrupted run."""
import json
import random
import subprocess
import sys

import pytest
import torch

from _helpers import sigkill_when

TIMING = {"seconds", "cpu_seconds", "time", "elapsed", "wall_seconds"}


def _strip(obj):
    """The JSON without wall-clock figures (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING and not k.endswith("_seconds")}
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
