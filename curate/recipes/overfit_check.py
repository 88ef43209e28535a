"""The paper's first experiment: trained vs held-out images under an overfitted model.

    python -m curate.recipes.overfit_check                 # preset digits (CPU)
    python -m curate.recipes.overfit_check --config cifar  # 2^6 CIFAR-10 images, paper U-Net (GPU)
    python -m curate.recipes.overfit_check --set methods.alg1.steps=1000 --dry-run

Stages (each resumable, all artefacts in the run folder):

1. data: n_train images (+ horizontal flips) to train on, n_heldout others held out;
2. train: a U-Net trained until it memorizes them (or the exact score, ``model.source
   = "exact"``, the perfectly memorizing model);
3. memorization: generated samples checked against the training set (Carlini / Gu),
   evidence that the model does reproduce its training images;
4. score: every method of ``[methods]`` on trained + held-out images, timed;
5. sweeps: AUROC and p-value against N (at T=1) and against the number of steps;
6. report: the method table (AUROC trained vs held-out, mean score per group),
   histograms, sweep curves, grids of the highest / lowest scored images, results.json.
"""

import sys
import time

import torch

from curate.recipes import _config
from curate.recipes._paper import (device_of, get_model, load_candidates, load_scores, log, report, save_tensors,
                                   source_size, stage_memorization, stage_score)
from curate.recipes._config import load_tensors

RECIPE = "overfit_check"


# ------------------------------------------------------------------ data ---

def stage_data(cfg: dict, run) -> dict:
    d = cfg["data"]
    n_source = source_size(d)
    n_train, n_held = int(d["n_train"]), int(d["n_heldout"])
    if n_train + n_held > n_source:
        raise ValueError(f"need {n_train + n_held} images, the dataset has {n_source}")
    g = torch.Generator().manual_seed(int(d.get("subset_seed", cfg["seed"])))
    perm = torch.randperm(n_source, generator=g)
    tr_idx, ho_idx = perm[:n_train], perm[n_train:n_train + n_held]
    images = load_candidates(d, torch.cat([tr_idx, ho_idx]).tolist())
    train, heldout = images[:n_train], images[n_train:]
    if d.get("flips", True):
        train = torch.cat([train, train.flip(-1)])
    save_tensors(run.file("data.safetensors"), train=train, heldout=heldout, train_idx=tr_idx,
                 heldout_idx=ho_idx)
    return {"n_train": train.shape[0], "n_heldout": n_held, "image_shape": list(train.shape[1:])}


# ---------------------------------------------------------------- sweeps ---

def stage_sweeps(cfg: dict, run, model, images: torch.Tensor, positive: torch.Tensor, scores_meta: dict) -> dict:
    """AUROC and Welch p against N (fd, T=1) and against steps (from a method's curve)."""
    from curate.evaluate import auroc, welch_t
    from curate.volume import track_volume_growth

    sw = cfg["sweeps"]
    out: dict = {"axes": [], "steps": []}
    D = images[0].numel()
    for n in sorted({min(int(a), D) for a in sw.get("axes", [])}):
        r = track_volume_growth(model, images, axes=n, steps=1, sigma=float(sw.get("sigma", 0.05)),
                                divergence=None, dtype=torch.float64, seed=int(cfg["seed"]), on_error="mark")
        s = r.log_growth
        out["axes"].append({"N": n, "auroc": auroc(s[positive], s[~positive]), "p": welch_t(s[positive], s[~positive])[1]})
    src = sw.get("steps_from", "")
    if src:
        curve = load_scores(run, {src: None}).get(f"curve.{src}") if src in scores_meta else None
        if curve is None:
            raise ValueError(f"sweeps.steps_from = {src!r} needs a method with curve = true")
        for t in sw.get("steps", []):
            if 1 <= t <= curve.shape[1]:
                s = curve[:, t - 1]
                out["steps"].append({"T": int(t), "auroc": auroc(s[positive], s[~positive]),
                                     "p": welch_t(s[positive], s[~positive])[1]})
        out["steps_from"] = scores_meta[src]["settings"]
    return out


# ------------------------------------------------------------------- main ---

def main(argv: list[str] | None = None) -> dict | None:
    return _config.run_recipe(RECIPE, __doc__.splitlines()[0], "digits", argv, _main)


def _main(cfg: dict, run) -> dict:
    t_start = time.perf_counter()
    run.stage("data", lambda: stage_data(cfg, run))
    data = load_tensors(run.file("data.safetensors"))
    train, held = data["train"], data["heldout"]
    dev = device_of(cfg)
    model = get_model(cfg, run, train)
    model = model.to(dev) if hasattr(model, "to") else model
    mem = run.stage("memorization", lambda: stage_memorization(cfg, run, model, train.to(dev)))
    if not mem.get("skipped"):
        log(f"  memorization check: {mem['fraction_samples_memorized_carlini']:.0%} of {mem['n_samples']} samples "
            f"are copies (Carlini), {mem['fraction_train_reproduced_carlini']:.0%} of the training images reproduced")
    images = torch.cat([train, held]).to(dev)
    positive = torch.cat([torch.ones(train.shape[0], dtype=torch.bool), torch.zeros(held.shape[0], dtype=torch.bool)])
    meta = stage_score(cfg, run, model, images)
    sweeps = run.stage("sweeps", lambda: stage_sweeps(cfg, run, model, images, positive, meta))
    return report(cfg, run, recipe=RECIPE, images=images.cpu(), positive=positive, meta=meta, sweeps=sweeps,
                  title=f"overfit check ({cfg['data']['dataset']}): trained vs held-out",
                  pos_label="trained", neg_label="held-out",
                  extra={"memorization": mem, "wall_seconds": time.perf_counter() - t_start})


if __name__ == "__main__":
    main(sys.argv[1:])
