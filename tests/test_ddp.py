"""Multi-process training: torchrun with two CPU processes (gloo) matches one process, and resumes."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from curate.data.tensors import digits_images
from curate.models.checkpoint import load_checkpoint
from curate.training import train

ARGS = ["--steps", "{steps}", "--batch-size", "8", "--lr", "1e-3", "--warmup", "2", "--save-every", "0",
        "--no-progress", "--device", "cpu"]


def _torchrun(out, data, steps):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "curate", "train", str(out), "--data", str(data)] + [a.format(steps=steps) for a in ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_and_resume(tmp_path):
    x = digits_images()[:24].contiguous()
    save_file({"images": x}, str(tmp_path / "digits.safetensors"))
    _torchrun(tmp_path / "ddp", tmp_path / "digits.safetensors", 3)
    first = load_checkpoint(tmp_path / "ddp")
    assert first.step == 3 and first.train_config["world_size"] == 2
    _torchrun(tmp_path / "ddp", tmp_path / "digits.safetensors", 5)  # resumes from step 3
    ddp = load_checkpoint(tmp_path / "ddp")
    assert ddp.step == 5
    assert (tmp_path / "ddp" / "log.jsonl").read_text().count("\n") == 2  # one line per run's last step

    # one process on the same global batches: the same weights up to reduction order
    train(x, tmp_path / "single", steps=5, batch_size=8, lr=1e-3, warmup=2, save_every=0, progress=False,
          device="cpu")
    single = load_checkpoint(tmp_path / "single")
    assert set(single.model_state) == set(ddp.model_state)
    moved = 0.0
    for k, v in single.model_state.items():
        assert torch.allclose(v, ddp.model_state[k], atol=2e-6, rtol=1e-4), k
        assert torch.allclose(single.ema_state[k], ddp.ema_state[k], atol=2e-6, rtol=1e-4), k
        moved = max(moved, (v - first.model_state[k]).abs().max().item())
    assert moved > 1e-4  # steps 4 and 5 really trained
