"""One block of the audit: sample generated images, save them, match them, and return
their FiftyOne samples.

A block is the sample indices [start, stop) of one seed: each sample's starting noise
depends only on (seed, index) (:func:`curate.sampling.block_noise`), and blocks have a
fixed size, so a block redone after an interruption is the block an uninterrupted run
computes. Images are saved as 8-bit PNGs and the *saved* pixels are what is matched,
so the App shows exactly what was judged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

#: Fields of the generated dataset and their FiftyOne types (declared once, up front).
GEN_FIELDS = {
    "index": "int", "nearest_id": "str", "nearest_filepath": "str", "nearest_group": "int",
    "rms_distance": "float", "carlini_ratio": "float", "gu_ratio": "float", "copy_carlini": "bool",
    "copy_gu": "bool", "copy_rms": "bool", "aligned_distance": "float", "aligned_nearest_id": "str",
    "aligned_nearest_group": "int", "copy_aligned": "bool", "copy": "bool", "error": "str",
}


@dataclass
class Setup:
    """What every block needs, built (and checked) before anything is written."""

    config: object               # AuditRunConfig
    model: object
    shape: tuple                 # (C, H, W)
    train_ids: list              # readable training samples, collection order
    train_paths: list
    failed: dict                 # unreadable training samples: id -> message
    train: object                # curate.reproduction.TrainingSet of the readable images
    aligned: object = None       # curate.duplicates.nearest.AlignedNearest or None
    aligned_threshold: float | None = None
    device: object = None
    memory_mb: float = 512.0
    first_of_group: list = field(default_factory=list)  # group -> readable row of its first image

    def blocks(self, rank: int = 0, world_size: int = 1) -> list[tuple[int, int]]:
        """[(start, stop)] of this rank's blocks: every world_size-th from rank."""
        n, b = self.config.num_samples, self.config.block_size
        return [(s, min(n, s + b)) for i, s in enumerate(range(0, n, b)) if i % world_size == rank]


def draw(setup: Setup, start: int, stop: int) -> torch.Tensor:
    """Samples [start, stop) of the run's seed, (stop - start, C, H, W) float32 on the CPU."""
    from curate.sampling import sample

    c = setup.config
    return sample(setup.model, stop - start, method=c.method_name, steps=c.steps, seed=c.seed, first=start,
                  batch_size=stop - start, progress=False, shape=tuple(setup.shape), t_min=c.t_min,
                  device=setup.device)


def _save_png(u8: np.ndarray, path: Path) -> None:
    """(C, H, W) uint8 -> PNG, atomically (a killed write never leaves a half file)."""
    from PIL import Image

    arr = u8[0] if u8.shape[0] == 1 else u8.transpose(1, 2, 0)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr, "L" if u8.shape[0] == 1 else "RGB").save(tmp, format="PNG")
    os.replace(tmp, path)


def image_path(out_dir, index: int) -> Path:
    return Path(out_dir) / f"generated_{index:07d}.png"


def run_block(setup: Setup, start: int, stop: int) -> list:
    """Samples, files and matches of one block -> FiftyOne samples (not yet added)."""
    import fiftyone as fo

    from curate.data.tensors import from_model_range, to_model_range
    from curate.reproduction import match

    c = setup.config
    x = draw(setup, start, stop)
    finite = torch.isfinite(x.flatten(1)).all(1)
    u8 = from_model_range(x[finite])
    xq = to_model_range(u8.numpy())  # exactly the saved pixels
    rows = torch.nonzero(finite).flatten().tolist()
    out_dir = Path(c.out_dir)
    for r, img in zip(rows, u8.numpy()):
        _save_png(img, image_path(out_dir, start + r))
    samples = []
    for r in range(stop - start):  # failed samples: a record with the reason, no file
        if not finite[r]:
            samples.append(fo.Sample(filepath=str(image_path(out_dir, start + r)), index=start + r,
                                     tags=["failed"], error="the model's sample is NaN/Inf"))
    if not rows:
        return samples
    m = match(xq.to(setup.train.unique.device), setup.train, alpha=c.alpha, n_nearest=c.n_nearest,
              gu_threshold=c.gu_threshold, rms_threshold=c.rms_threshold, memory_mb=setup.memory_mb)
    groups = m.group.cpu().numpy()
    if setup.aligned is not None:
        a_idx, a_dist = setup.aligned.nearest(xq.numpy(), extra=groups)
    ids, paths = setup.train_ids, setup.train_paths
    for j, r in enumerate(rows):
        g = int(groups[j])
        row = setup.first_of_group[g]
        copies = {k: bool(v[j]) for k, v in m.copies.items()}
        gu = float(m.gu_ratio[j])
        fields = dict(index=start + r, nearest_id=ids[row], nearest_filepath=paths[row], nearest_group=g,
                      rms_distance=float(m.rms[j]), carlini_ratio=float(m.carlini_ratio[j]),
                      gu_ratio=None if gu != gu else gu, copy_carlini=copies["carlini"], copy_gu=copies["gu"],
                      copy_rms=copies["rms"])
        if setup.aligned is not None:
            ag = int(a_idx[j])
            fields.update(aligned_distance=float(a_dist[j]), aligned_nearest_group=ag,
                          aligned_nearest_id=ids[setup.first_of_group[ag]],
                          copy_aligned=bool(a_dist[j] <= setup.aligned_threshold))
        fields["copy"] = fields.get("copy_" + c.criterion, False)
        samples.append(fo.Sample(filepath=str(image_path(out_dir, start + r)), tags=["generated"], **fields))
    return samples


def declare_fields(dataset) -> None:
    """The generated dataset's schema, declared before any rank adds samples."""
    import fiftyone.core.fields as fof

    types = {"int": fof.IntField, "str": fof.StringField, "float": fof.FloatField, "bool": fof.BooleanField}
    schema = dataset.get_field_schema()
    for name, t in GEN_FIELDS.items():
        if name not in schema:
            dataset.add_sample_field(name, types[t])


def pending_blocks(generated, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The blocks not complete in the generated dataset; a partial block (a kill during its
    insert) loses its samples here and is redone whole."""
    from fiftyone import ViewField as F

    have: dict[int, int] = {}
    for i in generated.values("index"):
        if i is not None:
            have[i] = have.get(i, 0) + 1
    todo = []
    for s, e in blocks:
        n = sum(have.get(i, 0) for i in range(s, e))
        if n == e - s and all(have.get(i, 0) == 1 for i in range(s, e)):
            continue
        if n:
            generated.delete_samples(generated.match((F("index") >= s) & (F("index") < e)))  # redo whole
        todo.append((s, e))
    return todo
