"""What the paper's two experiments share (:mod:`curate.recipes.overfit_check` and
:mod:`curate.recipes.memorized_vs_not`): the candidate images of a config, the model
(trained or exact), the memorization check of its samples, scoring every method of
``[methods]``, and the report (method table, histograms, grids, results.json)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from curate.recipes import _config
from curate.recipes._common import device_of, log  # noqa: F401 (the paper recipes import them from here)
from curate.recipes._config import load_tensors, save_tensors


# ------------------------------------------------------------------ data ---

def source_size(data_cfg: dict) -> int:
    """How many candidate images the configured dataset has (CIFAR-10: its training split)."""
    if data_cfg["dataset"] == "digits":
        return 1797
    return _cifar_call(data_cfg, lambda cifar, root: cifar.split_size(root, "train"))


def load_candidates(data_cfg: dict, indices=None) -> torch.Tensor:
    """Candidate images (n, C, H, W) in [-1, 1] (all, or those at ``indices``), resized to
    ``data.image_size`` when it is set (not 0). CIFAR-10 decodes only the chosen files."""
    name = data_cfg["dataset"]
    size = int(data_cfg.get("image_size", 0) or 0) or None
    if name == "digits":
        from curate.data.tensors import digits_images

        x = digits_images()
        x = x if indices is None else x[torch.as_tensor(indices)]
        return x if size is None else torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    if name == "cifar10":
        return _cifar_call(data_cfg, lambda cifar, root: cifar.load_tensor(root, "train", indices, image_size=size)[0])
    raise ValueError(f"unknown dataset {name!r}: use 'digits' or 'cifar10'")


def _cifar_call(data_cfg: dict, fn):
    """``fn(curate.data.cifar, root)`` on the configured CIFAR-10 copy (batches or image tree);
    torchvision fetches the batches first when ``data.download`` is set and nothing is there."""
    from curate.data import cifar

    root = Path(data_cfg.get("root") or "data/cifar10").expanduser()
    if cifar.find_batches(root) is None and not cifar.is_image_tree(root):
        if data_cfg.get("download", False):
            import torchvision

            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        else:
            raise SystemExit(f"error: no CIFAR-10 under {root} (cifar-10-batches-py or an image tree "
                             "train/<class>/...); set it with --cifar-root, or data.download = true when online")
    return fn(cifar, root)


# ----------------------------------------------------------------- model ---

def get_model(cfg: dict, run, train: torch.Tensor):
    """The score model: trained (stage ``train``, checkpoint in the run folder) or exact."""
    m = cfg["model"]
    if m["source"] == "exact":
        from curate.models.exact import ExactScore

        return ExactScore(train.to(torch.float64))
    if m["source"] != "train":
        raise ValueError(f"model.source must be 'train' or 'exact', got {m['source']!r}")
    from curate.training import train as train_model

    ckpt_dir = run.file("model")

    def do_train():
        t0 = time.perf_counter()
        kwargs = {k: v for k, v in m.items() if k not in ("source", "preset")}
        train_model(train, ckpt_dir, preset=m["preset"], seed=int(cfg["seed"]), **kwargs)
        return {"seconds": time.perf_counter() - t0}

    info = run.stage("train", do_train)
    log(f"  model trained in {info['seconds']:.0f} s")
    return load_trained(ckpt_dir, device_of(cfg))


def load_trained(ckpt_dir: Path, device=None):
    from curate.models.checkpoint import load_model

    return load_model(ckpt_dir, device=device)


# ---------------------------------------------------------- memorization ---

def stage_memorization(cfg: dict, run, model, train: torch.Tensor) -> dict:
    """Generate samples and check them against the training set."""
    from curate.memorization import find_memorized

    mc = cfg["memorization"]
    n = int(mc["samples"])
    if n <= 0:
        return {"skipped": True}
    from curate.sampling import sample

    t0 = time.perf_counter()
    samples = sample(model, n, shape=tuple(train.shape[1:]), seed=int(cfg["seed"]) + 1,
                     **{k: v for k, v in mc.items() if k not in ("samples",)})
    res = find_memorized(samples.to(torch.float32), train.to(torch.float32), progress=True)
    save_tensors(run.file("samples.safetensors"), samples=samples)
    res.save(run.file("memorization"))
    from curate.plots import image_grid

    image_grid(samples[:64], run.file("samples.png"), ncol=16, zoom=4 if train.shape[-1] <= 16 else 1)
    s = res.summary()
    s.update(
        seconds=time.perf_counter() - t0,
        fraction_samples_memorized_carlini=s["memorized_samples_carlini"] / n,
        fraction_samples_memorized_gu=s["memorized_samples_gu"] / n,
        fraction_train_reproduced_carlini=s["memorized_images_carlini"] / s["n_unique_train"],
    )
    return s


# ------------------------------------------------------------------ score ---

def stage_score(cfg: dict, run, model, images: torch.Tensor) -> dict:
    """Every method on ``images``, one resumable stage per method (scores_<name>.safetensors).

    Methods with the same tracker settings share one run within this process.
    """
    from curate.evaluate import run_methods

    labels = [spec.get("label", name) for name, spec in cfg["methods"].items()]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be unique, got {labels}")
    log(f"  scoring {images.shape[0]} images with {len(cfg['methods'])} methods")
    cache: dict = {}
    meta = {}
    for name, spec in cfg["methods"].items():
        def one(name=name, spec=spec):
            r = run_methods(model, images, {name: spec}, seed=int(cfg["seed"]), progress=True, log=log,
                            cache=cache)[name]
            tensors = {"score": r.scores.clone()}
            if r.curve is not None:
                tensors["curve"] = r.curve.clone()
            save_tensors(run.file(f"scores_{name}.safetensors"), **tensors)
            return {"label": r.label, "settings": r.settings, "nfe": r.nfe, "seconds": r.seconds,
                    "n_failed": r.n_failed}

        meta[name] = run.stage(f"score_{name}", one)
        log(f"  {meta[name]['label']}: {meta[name]['seconds']:.4f} s/image")
    return meta


def load_scores(run, meta: dict) -> dict:
    """{"score.<name>": (B,), "curve.<name>": (B, T)} of the scored methods."""
    out = {}
    for name in meta:
        for k, v in load_tensors(run.file(f"scores_{name}.safetensors")).items():
            out[f"{k}.{name}"] = v
    return out


# ----------------------------------------------------------------- report ---

def build_rows(scores: dict, meta: dict, positive: torch.Tensor, counts=None):
    from curate.evaluate import evaluate_method

    rows = []
    for name, m in meta.items():
        rows.append(evaluate_method(m["label"], scores[f"score.{name}"], positive, nfe=m["nfe"],
                                    seconds=m["seconds"], settings=m["settings"], counts=counts))
    return rows


def report(cfg: dict, run, *, recipe: str, images, positive, meta, sweeps, title, pos_label, neg_label, extra=None,
           counts=None) -> dict:
    """Print the method table; write histograms, sweep curves, image grids and results.json."""
    from rich.console import Console

    from curate import plots
    from curate.evaluate import best_method, method_table

    scores = load_scores(run, meta)
    rows = build_rows(scores, meta, positive, counts)
    console = Console(width=max(160, Console().width))
    console.print(method_table(rows, title=title, pos_label=pos_label, neg_label=neg_label))
    best = best_method(rows)
    best_key = next(k for k, m in meta.items() if m["label"] == best.name)
    console.print(f"best method: [bold]{best.name}[/bold] ({best.settings}), AUROC {best.auroc:.3f}, "
                  f"{best.nfe:,.0f} network evaluations per image")
    figs = run.file("figures")
    for name, m in meta.items():
        s = scores[f"score.{name}"]
        plots.two_group_histogram(s[positive], s[~positive], figs / f"hist_{name}.png", labels=(pos_label, neg_label),
                                  xlabel=f"score ({m['settings']})", title=m['label'])
    if sweeps.get("axes"):
        a = sweeps["axes"]
        plots.metric_curves([r["N"] for r in a], [r["auroc"] for r in a], [r["p"] for r in a],
                            figs / "sweep_axes.png", xlabel="N (axes), T = 1", title="AUROC and p against N")
    if sweeps.get("steps"):
        a = sweeps["steps"]
        plots.metric_curves([r["T"] for r in a], [r["auroc"] for r in a], [r["p"] for r in a],
                            figs / "sweep_steps.png", xlabel="steps T", title=f"against steps ({sweeps.get('steps_from')})")
    zoom = 4 if images.shape[-1] <= 16 else 2
    k = int(cfg["report"].get("grid", 32))
    plots.top_bottom_grids(images, scores[f"score.{best_key}"], figs, k=k, prefix=f"{best_key}_", ncol=8, zoom=zoom)
    result = {
        "recipe": recipe,
        "best": best.to_dict(),
        "methods": [r.to_dict() for r in rows],
        "sweeps": sweeps,
        **(extra or {}),
    }
    _config.atomic_write(run.file("results.json"), json.dumps(result, indent=2))
    console.print(f"artefacts in {run.path}/ (results.json, figures/)")
    return result


