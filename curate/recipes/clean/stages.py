"""The stages of the clean-and-retrain loop that build and change things: the dataset,
the models, the score, the cleaning decisions and the samples. Each takes the run's
:class:`Layout` and config (plain data) and returns a JSON dict; :mod:`.loop` runs them
in order and records each result."""
from __future__ import annotations

from typing import Callable

from curate.recipes import _config
from curate.recipes.clean.arms import REPLACEMENT_TAG, arm_view, tag_arms
from curate.recipes.clean.data import plant_duplicates, train_view, view_images
from curate.recipes.clean.layout import Layout
from curate.recipes.clean.settings import (ARM_EXCLUDE, EXPORTED_ARM, REPLACED_ARMS, constant_size, run_key, sampling_seed,
                                           score_kind_settings)


def _delete(*names: str) -> None:
    import fiftyone as fo

    for n in names:
        if fo.dataset_exists(n):
            fo.delete_dataset(n)


def dataset(lay: Layout, cfg: dict, build: Callable[[str], dict]) -> dict:
    """The FiftyOne dataset of the training samples (``build(name)`` makes it), with
    ``data.n_planted`` images copied ``data.copies`` times each."""
    import fiftyone as fo

    _delete(lay.name, lay.exported_name)
    info = build(lay.name)
    ds = fo.load_dataset(lay.name)
    d = cfg["data"]
    n_pool = int(d.get("n_pool", 0))
    if n_pool:  # the last images (by file) are held out: fresh replacements for constant-size arms
        ids = ds.match_tags("train").sort_by("filepath").values("id")
        if n_pool >= len(ids):
            raise ValueError(f"data.n_pool = {n_pool} leaves no training image of {len(ids)}")
        pool = ds.select(ids[-n_pool:])
        pool.untag_samples("train")
        pool.tag_samples("pool")
        info["n_pool"] = n_pool
    info.update(plant_duplicates(ds, ds.match_tags("train"), n_planted=int(d["n_planted"]), copies=int(d["copies"]),
                                 seed=lay.seed, folder=lay.path / "images" / "planted"))
    info["n_train"] = ds.match_tags("train").count()
    info["dataset_name"] = lay.name
    return info


def arm_samples(lay: Layout, cfg: dict, arm: str):
    """The samples ``arm`` trains on in the run's dataset: the training samples minus what the
    arm removes, plus (with ``clean.constant_size``, for :data:`REPLACED_ARMS`) the replacements."""
    import fiftyone as fo

    view = arm_view(train_view(lay.name), arm)
    if constant_size(cfg) and arm in REPLACED_ARMS:
        ds = fo.load_dataset(lay.name)
        view = ds.select(view.values("id") + ds.match_tags(REPLACEMENT_TAG).values("id"), ordered=True)
    return view


def training_view(lay: Layout, cfg: dict, arm: str):
    """What ``arm`` trains on: :func:`arm_samples`, or for the exported arm the export
    re-imported (so the export is what trains)."""
    import fiftyone as fo

    if arm == EXPORTED_ARM:
        return fo.load_dataset(lay.exported_name)
    return arm_samples(lay, cfg, arm)


def arm_images(lay: Layout, cfg: dict, arm: str):
    """The images ``arm`` trains on, (n, C, H, W) float32 in [-1, 1], read from FiftyOne."""
    return view_images(training_view(lay, cfg, arm))[1]


def train_images(lay: Layout, cfg: dict, arm: str, seed: int, images, *, progress: bool = True) -> dict:
    """One model of ``arm`` on ``images`` (:func:`arm_images`), training seed ``seed``, the
    config's budget. Needs no database (so a worker process can run it)."""
    from curate.training import train

    m = cfg["model"]
    kwargs = {k: v for k, v in m.items() if k not in ("preset",)}
    train(images, lay.model_dir(arm, seed), preset=m["preset"], seed=seed, device=lay.device, progress=progress,
          **kwargs)
    return {"arm": arm, "seed": seed, "n_images": len(images), "steps": int(m["steps"]),
            "batch_size": int(m["batch_size"])}


def train_arm(lay: Layout, cfg: dict, arm: str, seed: int) -> dict:
    """One model: ``arm``'s training images, training seed ``seed``, the config's budget."""
    return train_images(lay, cfg, arm, seed, arm_images(lay, cfg, arm))


def load_arm_model(lay: Layout, arm: str, seed: int):
    from curate.models.checkpoint import load_model

    return load_model(lay.model_dir(arm, seed), device=lay.device)


def score_field(cfg: dict) -> str:
    return score_kind_settings(cfg["score"])[0].field


def score(lay: Layout, cfg: dict) -> dict:
    """``score.use`` of every training sample by the first training seed's baseline."""
    from curate.brain import compute_score

    s = cfg["score"]
    kind, params = score_kind_settings(s)
    compute_score(train_view(lay.name), load_arm_model(lay, "baseline", lay.score_seed), kind.name,
                  score_field=score_field(cfg), batch_size=int(s["batch_size"]), seed=lay.seed,
                  device=lay.device, num_workers=2, overwrite=True, **params)
    # The record describes the field, not this call: a call that resumes a killed stage
    # scores only what was left, and the run it finishes must read the same as one never killed.
    view, field = train_view(lay.name), score_field(cfg)
    return {"scored": view.exists(field).count(), "failed": view.exists(f"{field}_error").count(),
            "samples": len(view), "field": field, "score": kind.name, "model": run_key("baseline", lay.score_seed)}


def clean(lay: Layout, cfg: dict) -> dict:
    """Tag every arm's removals, export the recommended arm and re-import the export.

    Uses nothing but the score field and the dedupe."""
    import fiftyone as fo
    import fiftyone.types as fot

    from curate.brain import export_clean

    train = train_view(lay.name)
    out = tag_arms(train, cfg, score_field(cfg), lay.seed)
    export_dir = lay.path / "export"
    n_export = export_clean(arm_samples(lay, cfg, EXPORTED_ARM), export_dir, exclude_tags=(), overwrite=True,
                            progress=False)
    excl = ARM_EXCLUDE[EXPORTED_ARM]
    _delete(lay.exported_name)
    cleaned = fo.Dataset.from_dir(dataset_dir=str(export_dir), dataset_type=fot.ImageClassificationDirectoryTree,
                                  name=lay.exported_name, persistent=True, progress=False)
    if cleaned.count() != n_export or n_export != out["n_kept"][EXPORTED_ARM]:
        raise RuntimeError(f"the export holds {cleaned.count()} images but {n_export} were exported "
                           f"and the arm keeps {out['n_kept'][EXPORTED_ARM]}")
    out.update({"exported_arm": EXPORTED_ARM, "exclude_tags": excl, "n_exported": n_export,
                "exported_dataset": cleaned.name})
    return out


def sample_arm(lay: Layout, cfg: dict, arm: str, seed: int, *, progress: bool = True) -> dict:
    """``memorization.samples`` images of one model (every arm of a seed from the same noise)."""
    from curate import plots
    from curate.sampling import sample

    mc = cfg["memorization"]
    x = sample(load_arm_model(lay, arm, seed), int(mc["samples"]), method=mc["method"], steps=int(mc["steps"]),
               seed=sampling_seed(seed), progress=progress)
    lay.samples_path(arm, seed).parent.mkdir(exist_ok=True)
    _config.save_tensors(lay.samples_path(arm, seed), samples=x)
    zoom = 4 if x.shape[-1] <= 16 else 2
    plots.image_grid(x[:64], lay.path / "figures" / f"samples_{run_key(arm, seed)}.png", ncol=16, zoom=zoom)
    return {"n_samples": x.shape[0], "sampling_seed": sampling_seed(seed)}
