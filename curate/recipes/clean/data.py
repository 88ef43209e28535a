"""The training data of the clean-and-retrain loop: its FiftyOne dataset's name, its
images as tensors, and the planted duplicates that make memorization measurable."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch


def dataset_name(cfg: dict, run_path: Path) -> str:
    """The FiftyOne dataset of this run: ``cfg['dataset_name']`` or one derived from the run folder."""
    if cfg.get("dataset_name"):
        return cfg["dataset_name"]
    h = hashlib.sha256(str(run_path.resolve()).encode()).hexdigest()[:10]
    return f"{run_path.name}-{h}"


def train_view(name: str):
    """The training samples (tag ``train``) of the run's dataset ``name``."""
    import fiftyone as fo

    return fo.load_dataset(name).match_tags("train")


def view_images(view) -> tuple[list[str], torch.Tensor]:
    """Every image of a FiftyOne view: ids (n,) and images (n, C, H, W) float32 in [-1, 1]."""
    from curate.data.loader import load_images

    ids, images, failed = load_images(view, batch_size=512, num_workers=2)
    if failed:
        sid, why = next(iter(failed.items()))
        raise RuntimeError(f"{len(failed)} training image(s) could not be read, e.g. {sid}: {why}")
    return ids, images


def plant_duplicates(dataset, train, *, n_planted: int, copies: int, seed: int, folder: Path) -> dict:
    """Copy ``n_planted`` training images (chosen at random, seeded) ``copies - 1`` more
    times as new files and samples. Every member of a group (original and copies) gets
    ``planted_group`` = the group number; other samples have None."""
    import fiftyone as fo
    import fiftyone.core.fields as fof

    dataset.add_sample_field("planted_group", fof.IntField)
    if n_planted == 0:
        return {"n_planted": 0, "copies": 0, "n_copies_added": 0}
    ids, paths, labels = train.values(["id", "filepath", "ground_truth.label"])
    if n_planted > len(ids):
        raise ValueError(f"data.n_planted = {n_planted} but only {len(ids)} training images")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(ids), generator=g)[:n_planted].tolist()
    folder.mkdir(parents=True, exist_ok=True)
    new = []
    for group, i in enumerate(pick):
        src = Path(paths[i])
        for c in range(1, copies):
            dst = folder / f"planted{group:03d}_copy{c:03d}{src.suffix}"
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            new.append(fo.Sample(filepath=str(dst.resolve()), tags=["train"], planted_group=group,
                                 ground_truth=fo.Classification(label=labels[i])))
    dataset.add_samples(new, progress=False)
    dataset.set_values("planted_group", {ids[i]: group for group, i in enumerate(pick)}, key_field="id")
    return {"n_planted": n_planted, "copies": copies, "n_copies_added": len(new),
            "planted_sources": [paths[i] for i in pick]}
