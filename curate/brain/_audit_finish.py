"""The end of an audit: counts on the training samples, and the copies beside their
sources for the App.

Everything here is recomputed from the generated dataset (never from what one process
kept in memory), so a run finished after any interruption writes what one run writes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def aggregate(setup, generated) -> tuple[dict, int]:
    """({criterion: (n_readable,) long counts per readable training sample}, m_valid)."""
    from curate.reproduction import counts_per_image

    c = setup.config
    done = generated.exists("nearest_group")
    fields = ["nearest_group"] + [f"copy_{k}" for k in c.criteria]
    if c.aligned:
        fields.append("aligned_nearest_group")
    vals = dict(zip(fields, done.values(fields))) if done.count() else {f: [] for f in fields}
    m_valid = len(vals["nearest_group"])
    group = setup.train.group.cpu()
    out = {}
    for k in c.criteria:
        col = vals["aligned_nearest_group" if k == "aligned" else "nearest_group"]
        nearest = torch.tensor(col, dtype=torch.long)
        copy = torch.tensor([bool(v) for v in vals[f"copy_{k}"]], dtype=torch.bool)
        out[k] = counts_per_image(nearest, copy, group)
    return out, m_valid


def declare_train_fields(dataset, config) -> None:
    """The training samples' fields (call under the dataset lock)."""
    import fiftyone.core.fields as fof

    key = config.audit_key
    types = {f"{key}_rate": fof.FloatField, f"{key}_rate_low": fof.FloatField,
             f"{key}_rate_high": fof.FloatField, f"{key}_error": fof.StringField}
    schema = dataset.get_field_schema()
    for f in config.train_fields():
        if f not in schema:
            dataset.add_sample_field(f, types.get(f, fof.IntField))


def write_train_fields(dataset, setup, counts: dict, m_valid: int) -> None:
    """Counts per criterion, the chosen one's rate with its Wilson 95 % interval, groups
    and errors, on the training samples (every value rewritten: idempotent)."""
    from curate.reproduction import rates

    c = setup.config
    key, ids = c.audit_key, setup.train_ids
    chosen = counts[c.criterion]
    dataset.set_values(key, dict(zip(ids, chosen.tolist())), key_field="id")
    for k in c.criteria:
        dataset.set_values(f"{key}_{k}", dict(zip(ids, counts[k].tolist())), key_field="id")
    if m_valid:
        rate, low, high = rates(chosen, m_valid)
        for f, v in ((f"{key}_rate", rate), (f"{key}_rate_low", low), (f"{key}_rate_high", high)):
            dataset.set_values(f, dict(zip(ids, v.tolist())), key_field="id")
    dataset.set_values(f"{key}_group", dict(zip(ids, setup.train.group.cpu().tolist())), key_field="id")
    if setup.failed:
        dataset.set_values(f"{key}_error", dict(setup.failed), key_field="id")


def _u8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8."""
    from curate.data.tensors import from_model_range

    return from_model_range(x).numpy().transpose(1, 2, 0)


def _pair_image(gen: np.ndarray, src: np.ndarray, path: Path) -> None:
    """generated | source, side by side with a white gap, scaled up to at least 128 px high."""
    from PIL import Image

    h, w, ch = gen.shape
    gap = max(1, w // 8)
    canvas = np.full((h, 2 * w + gap, ch), 255, np.uint8)
    canvas[:, :w], canvas[:, w + gap:] = gen, src
    img = Image.fromarray(canvas[..., 0] if ch == 1 else canvas, "L" if ch == 1 else "RGB")
    zoom = max(1, 128 // h)
    img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    Path(tmp).replace(path)


def build_copies(setup, generated, counts: dict, *, persistent: bool) -> int:
    """The grouped copies dataset: one group per copying generated sample, slices
    ``pair`` (generated | source side by side; the grid's default), ``generated`` and
    ``source`` (the training image it copies). Rebuilt whole; returns the copies."""
    import fiftyone as fo
    from PIL import Image

    c = setup.config
    name = c.copies_dataset
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=persistent)
    ds.add_group_field("group", default="pair")
    copies = generated.match(fo.ViewField("copy") == True).sort_by("index")  # noqa: E712
    rows = copies.values(["index", "filepath", "nearest_id", "nearest_filepath", "nearest_group",
                          "rms_distance", "carlini_ratio", "aligned_distance"])
    chosen = counts[c.criterion]
    first = setup.first_of_group
    samples = []
    for index, gpath, sid, spath, g, rms, cr, ad in zip(*rows):
        gen = np.asarray(Image.open(gpath))
        gen = gen[..., None] if gen.ndim == 2 else gen
        src = _u8(setup.train.unique[g].reshape(setup.shape).cpu())
        pair = Path(c.out_dir) / f"pair_{index:07d}.png"
        _pair_image(gen, src, pair)
        group = fo.Group()
        common = dict(index=index, source_id=sid, rms_distance=rms, carlini_ratio=cr, aligned_distance=ad,
                      reproductions=int(chosen[first[g]]))
        samples += [fo.Sample(filepath=str(pair), group=group.element("pair"), **common),
                    fo.Sample(filepath=gpath, group=group.element("generated"), **common),
                    fo.Sample(filepath=spath, group=group.element("source"), **common)]
    if samples:
        ds.add_samples(samples, progress=False)
    return len(samples) // 3
