"""The measurements of docs/scores-ceiling.md: per-image reproduction rates from many samples,
split-half noise ceilings, every score kind against them, and the calibration of
``reproduction_probability`` against the measured rates.

Every step is resumable (a finished output is skipped) and writes under ``--run``:

    python docs/scores_ceiling.py sample  --run runs/h22 --sets 10 --per-set 1024 --steps 25
    python docs/scores_ceiling.py score   --run runs/h22 --steps 25
    python docs/scores_ceiling.py report  --run runs/h22 --plot docs/scores-ceiling-calibration.png

``--run`` must hold ``model/`` (a ``curate train`` checkpoint) and ``train.safetensors`` (its
training images). Samples are drawn with ``curate sample`` and counted with ``curate memorization``
(RMS criterion, threshold 0.10); one torch thread throughout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CURATE = [sys.executable, "-m", "curate"]
# Tuning: every other training image (even positions); the evaluation half is the odd ones.
RECON_GRID = [dict(t=t, steps=50, draws=8) for t in (0.5, 0.3, 0.7)]
RECON_LATE = [dict(t=t, steps=50, draws=8) for t in (0.4, 0.6)]  # after reproduction_probability
BASELINES = ["volume_growth", "divergence", "generation_logp", "denoising_score", "pia", "flipd", "eps_norm"]


def _sh(cmd):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def sample(a):
    run = Path(a.run)
    (run / "samples").mkdir(parents=True, exist_ok=True)
    for s in range(a.first, a.sets):
        out, counts = run / "samples" / f"set{s}.safetensors", run / "samples" / f"set{s}.json"
        if not out.exists():
            _sh(CURATE + ["sample", "--model", run / "model", "--out", out, "-n", a.per_set, "--method", "euler",
                          "--steps", a.steps, "--seed", 1000 + s, "--device", "cpu", "--no-progress"])
        if not counts.exists():
            _sh(CURATE + ["memorization", "--samples", out, "--train", run / "train.safetensors",
                          "--device", "cpu", "--out", counts, "--top", "0"])


def _setup():
    import torch

    torch.set_num_threads(1)
    from curate.models.checkpoint import load_model
    from safetensors.torch import load_file

    return torch, load_model, load_file


def _save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def score(a):
    torch, load_model, load_file = _setup()
    import curate.scores as scores
    from curate.scores.reconstruction import distances

    run = Path(a.run)
    out = run / "scores"
    out.mkdir(exist_ok=True)
    model = load_model(run / "model", device="cpu")
    x = load_file(run / "train.safetensors")["images"]
    jobs = [(k, {}) for k in BASELINES]
    for p in RECON_GRID:
        jobs.append((f"recon_t{p['t']}_S{p['steps']}_K{p['draws']}", p))
    for name, params in jobs:
        path = out / f"{name}.json"
        if path.exists():
            continue
        print("scoring", name, flush=True)
        if name.startswith("recon_"):
            d = distances(model, x, solver="euler", distance="rms", seed=0, **params)
            _save(path, dict(params=params, draws=d.tolist(), values=(-d.mean(1)).tolist()))
        else:
            r = scores.get(name)(model, x, seed=0)
            _save(path, dict(params=scores.get(name).defaults(), values=r.values.tolist(),
                             extra={k: v.tolist() for k, v in r.extra.items()}))
    path = out / "reproduction_probability.json"
    if not path.exists():
        print("scoring reproduction_probability", flush=True)
        r = scores.get("reproduction_probability")(model, x, seed=0, steps=a.steps, proposals=a.proposals)
        _save(path, dict(params=dict(steps=a.steps, proposals=a.proposals), values=r.values.tolist(),
                         extra={k: v.tolist() for k, v in r.extra.items()}))
    for params in RECON_LATE:
        path = out / f"recon_t{params['t']}_S{params['steps']}_K{params['draws']}.json"
        if not path.exists():
            print("scoring", path.stem, flush=True)
            d = distances(model, x, solver="euler", distance="rms", seed=0, **params)
            _save(path, dict(params=params, draws=d.tolist(), values=(-d.mean(1)).tolist()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["sample", "score", "report"])
    ap.add_argument("--run", default="runs/h22")
    ap.add_argument("--sets", type=int, default=10)
    ap.add_argument("--per-set", type=int, default=1024)
    ap.add_argument("--first", type=int, default=0, help="first set this process draws (to split sets over processes)")
    ap.add_argument("--steps", type=int, default=25, help="Euler steps of the audit's sampler")
    ap.add_argument("--proposals", type=int, default=64)
    ap.add_argument("--plot", default="docs/scores-ceiling-calibration.png")
    ap.add_argument("--label", default=str(1 / 1024),
                    help="positive images: measured rate >= this, or 'median' (above the median rate)")
    a = ap.parse_args()
    if a.step == "report":
        from scores_ceiling_report import report  # beside this file

        report(a)
    else:
        {"sample": sample, "score": score}[a.step](a)
