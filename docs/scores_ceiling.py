"""The measurements of docs/scores-ceiling.md: per-image reproduction rates from many samples,
split-half noise ceilings, every score kind against them, and the calibration of
``reproduction_probability`` against the measured rates.

Every step is resumable (a finished output is skipped) and writes under ``--run``:

    python docs/scores_ceiling.py sample  --run runs/h22 --sets 10 --per-set 1024 --steps 25
    python docs/scores_ceiling.py score   --run runs/h22 --steps 25
    python docs/scores_ceiling.py extra   --run runs/h22
    python docs/scores_ceiling.py basin   --run runs/h22 --steps 25
    python docs/scores_ceiling.py report  --run runs/h22 --plot docs/scores-ceiling-calibration.png
    python docs/scores_ceiling.py axes    --run runs/h16   # "one axis and one step suffice?"

``--run`` must hold ``model/`` (a ``curate train`` checkpoint) and ``train.safetensors`` (its
training images). Samples are drawn with ``curate sample`` and counted with ``curate memorization``
(RMS criterion, threshold 0.10); one torch thread throughout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CURATE = [sys.executable, "-m", "curate"]
# Tuning: every other training image (even positions); the evaluation half is the odd ones.
RECON_GRID = [dict(t=t, steps=50, draws=8) for t in (0.5, 0.3, 0.7)]
RECON_LATE = [dict(t=t, steps=50, draws=8) for t in (0.4, 0.6)]  # after reproduction_probability
RECON_EXTRA = [dict(t=0.5, steps=50, draws=16), dict(t=0.5, steps=25, draws=8)]  # step "extra": K and S
BASELINES = ["volume_growth", "divergence", "generation_logp", "denoising_score", "pia", "flipd", "eps_norm"]


def _sh(cmd):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def data(a):
    """The training images: ``--n`` CIFAR-10 training images (a permutation seeded by
    ``--subset-seed``), box-filtered to ``--size``, as ``train.safetensors`` (float in [-1, 1])."""
    torch, _, _ = _setup()
    from safetensors.torch import save_file

    from curate.data.cifar import load_tensor, split_size

    n = split_size(a.cifar_root, "train")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(a.subset_seed))[:a.n].sort().values.numpy()
    x, _, index = load_tensor(a.cifar_root, "train", idx, image_size=a.size)
    Path(a.run).mkdir(parents=True, exist_ok=True)
    save_file({"images": x.contiguous()}, str(Path(a.run) / "train.safetensors"))
    print(f"{len(x)} images {tuple(x.shape[1:])}, official indices {index.tolist()}")


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


def _reconstruction(run: Path, model, x, params: dict) -> None:
    """``reconstruction`` distances (RMS, Euler, seed 0) at ``params`` (t, steps, draws) into
    ``scores/recon_t{t}_S{steps}_K{draws}.json``, unless already there."""
    from curate.scores.reconstruction import distances

    path = run / "scores" / f"recon_t{params['t']}_S{params['steps']}_K{params['draws']}.json"
    if not path.exists():
        print("scoring", path.stem, flush=True)
        d = distances(model, x, solver="euler", distance="rms", seed=0, **params)
        _save(path, dict(params=params, draws=d.tolist(), values=(-d.mean(1)).tolist()))


def extra(a):
    """More draws K and fewer steps S at t = 0.5 (their own step, so it can run beside ``score``)."""
    torch, load_model, load_file = _setup()

    run = Path(a.run)
    model = load_model(run / "model", device="cpu")
    x = load_file(run / "train.safetensors")["images"]
    for params in RECON_EXTRA:
        _reconstruction(run, model, x, params)


AXES_GRID = [(1, 1), (1, 10), (1, 100), (8, 1), (8, 10), (32, 10)]  # (axes N, steps T) of volume_growth


def axes(a):
    """The paper's claim that one axis and one step suffice: ``volume_growth`` over a grid of
    axes N and steps T (the rest at its defaults), each against the labels of all samples
    (``--label``) beside the split-half ceiling; scores cached under ``scores/``."""
    torch, load_model, load_file = _setup()
    import curate.scores as scores
    from scores_ceiling_report import ceiling, label, load_counts, score_row  # beside this file

    run = Path(a.run)
    model = load_model(run / "model", device="cpu")
    x = load_file(run / "train.safetensors")["images"]
    counts, per_set = load_counts(run)
    total = counts.sum(0)
    n = counts.shape[0] * per_set
    labels, rate = label(total, n, a.label), total / n
    ceil, _ = ceiling(counts, per_set, counts.shape[0] // 2, rule=a.label)
    print(f"labels: {int(labels.sum())} of {len(labels)} positive from {n} samples; split-half ceiling {ceil:.3f}")
    print("| axes N | steps T | AUROC | fraction of ceiling | Spearman with rate | TPR at 1 % FPR |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n_axes, steps in AXES_GRID:
        path = run / "scores" / f"volume_growth_N{n_axes}_T{steps}.json"
        if not path.exists():
            r = scores.get("volume_growth")(model, x, seed=0, axes=n_axes, steps=steps)
            _save(path, dict(params=dict(axes=n_axes, steps=steps), values=r.values.tolist()))
        row = score_row("volume_growth", np.array(json.loads(path.read_text())["values"]), labels, rate, ceil)
        print(f"| {n_axes} | {steps} | {row['auroc']:.3f} | {row['frac']:.2f} | {row['spearman']:.2f} | {row['tpr']:.2f} |",
              flush=True)


def basin(a):
    """Where the starts that copy an image lie, against its inverted latent u (first 8 images;
    the copies of the first 4 sample sets): why importance sampling along u misses the mass."""
    torch, load_model, load_file = _setup()
    from curate.sampling import block_noise
    from curate.scores._ode import integrate, rms
    from curate.scores.reproduction_probability import sampler_ends

    run = Path(a.run)
    model = load_model(run / "model", device="cpu")
    x = load_file(run / "train.safetensors")["images"]
    shape, D = tuple(x.shape[1:]), x[0].numel()
    u = integrate(model, x, 1e-3, 1.0, a.steps, "euler")
    back = rms(sampler_ends(model, u, a.steps), x)
    print(f"round trip |Phi(u) - x| rms: median {back.median():.4f}, {(back < 0.1).float().mean():.2f} of images "
          f"within 0.10; |u|^2 / D mean {u.flatten(1).pow(2).mean(1).mean():.2f}")
    uh = u.flatten(1) / u.flatten(1).norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(0)
    few, n = x[:8], 32
    e = torch.randn(8, n, D, generator=g)

    def hits(centre, r):
        starts = (centre[:8].unsqueeze(1) + r * e).reshape(-1, *shape)
        d = rms(sampler_ends(model, starts, a.steps), few.repeat_interleave(n, 0)).reshape(8, n)
        return (d < 0.1).float().mean(1)

    for name, centre, r in [("u + 0.3 e", u.flatten(1), 0.3), ("u + 0.6 e", u.flatten(1), 0.6),
                            ("u + e", u.flatten(1), 1.0), ("sqrt(D) u_hat + 0.5 e", uh * D ** 0.5, 0.5),
                            ("4 u_hat + e", 4 * uh, 1.0), ("8 u_hat + e", 8 * uh, 1.0)]:
        print(f"hits from {name}: " + " ".join(f"{h:.2f}" for h in hits(centre, r).tolist()))
    cos = []
    for s in range(4):
        z = block_noise(1000 + s, 0, 0, a.per_set, shape).flatten(1)
        samples = load_file(run / "samples" / f"set{s}.safetensors")["images"].flatten(1)
        r, i = (torch.cdist(samples, x.flatten(1)) / D ** 0.5).min(1)
        zc, ic = z[r < 0.1], i[r < 0.1]
        cos.append((zc / zc.norm(dim=1, keepdim=True) * uh[ic]).sum(1))
    cos = torch.cat(cos)
    q = torch.quantile(cos, torch.tensor([0.1, 0.5, 0.9])).tolist()
    print(f"{len(cos)} copies: cos(start, u_hat of the copied image) 10/50/90 %: {q[0]:.3f} {q[1]:.3f} {q[2]:.3f} "
          f"(two random directions: sd {D ** -0.5:.3f})")


def score(a):
    torch, load_model, load_file = _setup()
    import curate.scores as scores

    run = Path(a.run)
    out = run / "scores"
    out.mkdir(exist_ok=True)
    model = load_model(run / "model", device="cpu")
    x = load_file(run / "train.safetensors")["images"]
    for name in BASELINES:
        path = out / f"{name}.json"
        if not path.exists():
            print("scoring", name, flush=True)
            r = scores.get(name)(model, x, seed=0)
            _save(path, dict(params=scores.get(name).defaults(), values=r.values.tolist(),
                             extra={k: v.tolist() for k, v in r.extra.items()}))
    for params in RECON_GRID:
        _reconstruction(run, model, x, params)
    path = out / "reproduction_probability.json"
    if not path.exists():
        print("scoring reproduction_probability", flush=True)
        r = scores.get("reproduction_probability")(model, x, seed=0, steps=a.steps, proposals=a.proposals)
        _save(path, dict(params=dict(steps=a.steps, proposals=a.proposals), values=r.values.tolist(),
                         extra={k: v.tolist() for k, v in r.extra.items()}))
    for params in RECON_LATE:
        _reconstruction(run, model, x, params)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["data", "sample", "score", "extra", "basin", "axes", "report"])
    ap.add_argument("--cifar-root", default="../shared/data/cifar10")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--subset-seed", type=int, default=22)
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
        {"data": data, "sample": sample, "score": score, "extra": extra, "basin": basin, "axes": axes}[a.step](a)
