"""Kill training at random points: it resumes from the last complete checkpoint (never a
half-written one) and ends bit-identical to an uninterrupted run."""
import copy
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from _helpers import sigkill_when

from curate.models import checkpoint as ck
from curate.models.unet import build_unet

TRAIN = ["--data", "digits", "--n", "64", "--batch-size", "16", "--warmup", "5", "--save-every", "4",
         "--no-progress", "--device", "cpu", "--seed", "3"]
STEPS = 40


class _Crash(BaseException):
    """Stands for the process dying at this instant."""


def _ckpt_names():
    return {ck.CONFIG, ck.WEIGHTS, ck.EMA, ck.OPT_TENSORS, ck.OPT_JSON}


def test_crash_between_checkpoint_renames_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = build_unet("tiny", image_size=8, channels=1)
    ema = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters())
    net(torch.zeros(2, 1, 8, 8), torch.ones(2)).sum().backward()
    opt.step()
    folder = ck.save_checkpoint(tmp_path / "ckpt", net, ema=ema, optimizer=opt, step=1)
    first = {k: v.clone() for k, v in net.state_dict().items()}
    real_replace = os.replace
    for crash_after in range(1, len(_ckpt_names())):  # every point between two renames
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        done = [0]

        def replace(src, dst, crash_after=crash_after):
            if os.path.basename(dst) in _ckpt_names() and os.path.dirname(os.path.abspath(dst)) == str(folder.absolute()):
                if done[0] == crash_after:
                    raise _Crash()
                done[0] += 1
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(_Crash):
            ck.save_checkpoint(folder, net, ema=ema, optimizer=opt, step=2)
        monkeypatch.setattr(os, "replace", real_replace)
        # The folder now mixes two saves: loading gives the last complete one, whole.
        state = ck.load_checkpoint(folder)
        assert state.step == 1, crash_after
        assert all(torch.equal(state.model_state[k], v) for k, v in first.items())
        assert state.optimizer_state is not None and ck.is_curate_checkpoint(folder)
        ck.load_model(folder, device="cpu")
    # A save that completes replaces it, and the fallback is gone.
    ck.save_checkpoint(folder, net, ema=ema, optimizer=opt, step=3)
    state = ck.load_checkpoint(folder)
    assert state.step == 3 and all(torch.equal(state.model_state[k], v) for k, v in net.state_dict().items())


def _step(folder):
    try:
        return json.loads((folder / ck.CONFIG).read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.slow
def test_sigkill_training_at_random_points_then_resume(tmp_path, child_env):
    from curate.training import train
    from curate.training_data import read_training_images

    env = dict(child_env, OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "curate", "train", str(out), "--steps", str(STEPS), *TRAIN]
    history = []
    for seed in (5, 6, 7):
        rng = random.Random(seed)
        target = _step(out) + 4 * rng.randint(0, 2)
        jitter = rng.uniform(0.0, 0.4)
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = sigkill_when(child, lambda: _step(out) >= max(target, 1), jitter)
        # Whatever the moment, the folder loads as one complete save (never a half-written one).
        state = ck.load_checkpoint(out)
        assert state.step % 4 == 0 or state.step == STEPS
        history.append((seed, state.step, killed))
    assert any(k and 0 < s < STEPS for _, s, k in history), history

    # Finish in this process, and train the same run uninterrupted: identical weights.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the children: same kernels, same rounding
    try:
        images = read_training_images("digits", n=64)
        kw = dict(preset="tiny", steps=STEPS, batch_size=16, warmup=5, save_every=4, seed=3,
                  progress=False, device="cpu")
        train(images, out, **kw)
        train(images, tmp_path / "straight", **kw)
    finally:
        torch.set_num_threads(threads)
    a, b = ck.load_checkpoint(out), ck.load_checkpoint(tmp_path / "straight")
    assert a.step == b.step == STEPS
    for name in ("model_state", "ema_state"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
