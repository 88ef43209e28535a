"""Checks and set-up of an audit, before anything is written: settings, model, training
collection, one probe sample; then the run's registration under the dataset lock."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from curate.brain._audit_run import ALL_CRITERIA, IDENTITY, MARKER, AuditRunConfig, remove_outputs


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def train_fingerprint(ids) -> str:
    """sha256 of the sorted training sample ids: the audit is of this exact collection."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def default_out_dir(dataset, key: str) -> Path:
    import fiftyone as fo

    return Path(fo.config.default_dataset_dir) / "curate-audits" / f"{dataset.name}-{key}"


def build_setup(train, model, *, num_samples, audit_key, criterion, method, steps, t_min, seed, batch_size,
                out_dir, memory_mb, aligned, aligned_threshold, aligned_relative, mirror, dedupe, device,
                model_description, num_workers, alpha, n_nearest, gu_threshold, rms_threshold):
    """Check everything and build the :class:`~curate.brain._audit_blocks.Setup` (writes nothing).

    Raises ValueError/TypeError with a reason: a bad setting, an empty collection,
    training images of another size than the model's, no readable training image, or a
    model whose first sample is NaN/Inf."""
    from curate.brain import runs
    from curate.brain._audit_blocks import Setup
    from curate.brain._engine import _describe, check_collection
    from curate.brain._names import check_field_name
    from curate.data.loader import load_images
    from curate.models.base import check_model
    from curate.reproduction import TrainingSet
    from curate.sampling import METHODS

    check_field_name(audit_key, "audit_key")
    check_model(model)
    num_samples = _positive_int(num_samples, "num_samples")
    batch_size = _positive_int(batch_size, "batch_size")
    steps = _positive_int(steps, "steps")
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")
    crits = ALL_CRITERIA if aligned else ALL_CRITERIA[:3]
    if criterion not in crits:
        raise ValueError(f"criterion must be one of {crits}, got {criterion!r}"
                         + (" (aligned=False switches the aligned criterion off)" if criterion == "aligned" else ""))
    if not memory_mb > 0:
        raise ValueError(f"memory_mb must be > 0, got {memory_mb!r}")
    policy = check_collection(train, model, batch_size=batch_size, size=None, channels=None, resize=False)
    shape = (policy.channels, *policy.size)
    ids, images, failed = load_images(train, size=policy.size, channels=policy.channels, num_workers=num_workers)
    if not ids:
        raise ValueError(f"none of the {len(failed)} training images could be read, e.g. "
                         f"{next(iter(failed.values()), '')}")
    paths = dict(zip(*train.values(["id", "filepath"])))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    setup = Setup(config=None, model=model, shape=shape, train_ids=ids, train_paths=[paths[i] for i in ids],
                  failed=failed, train=None, device=device, memory_mb=float(memory_mb))
    config = AuditRunConfig(
        audit_key, model=type(model).__module__ + "." + type(model).__qualname__,
        model_description=model_description or _describe(model), model_fingerprint=runs.model_fingerprint(model),
        method_name=method, steps=steps, num_samples=num_samples, seed=int(seed), block_size=batch_size,
        criterion=criterion, alpha=float(alpha), n_nearest=int(n_nearest), gu_threshold=float(gu_threshold),
        rms_threshold=float(rms_threshold), aligned=bool(aligned), aligned_relative=aligned_relative,
        mirror=bool(mirror), dedupe=bool(dedupe), image_shape=list(shape), train_fingerprint=train_fingerprint(ids),
        t_min=t_min, out_dir=str(Path(out_dir or default_out_dir(train._dataset, audit_key)).resolve()),
        generated_dataset=f"{train._dataset.name}-{audit_key}-generated",
        copies_dataset=f"{train._dataset.name}-{audit_key}-copies", versions=runs.versions())
    setup.config = config
    # The model's first sample, before anything is written: a NaN model fails here.
    from curate.brain._audit_blocks import draw

    try:
        x0 = draw(setup, 0, 1)
    except (ValueError, TypeError):
        raise
    except Exception as e:
        raise ValueError(f"the model failed to sample a {shape} image: {type(e).__name__}: {e}") from e
    if not torch.isfinite(x0).all():
        raise ValueError("the model's first sample is NaN/Inf; refusing to audit with it (nothing written)")
    setup.train = TrainingSet(images, dedupe=dedupe).to(dev)
    first = setup.train.first.cpu().tolist()
    setup.first_of_group = first
    if aligned:
        from curate.duplicates.nearest import AlignedNearest

        uniq = setup.train.unique.reshape(-1, *shape).cpu().numpy()
        setup.aligned = AlignedNearest(uniq, mirror=mirror)
        setup.aligned_threshold = setup.aligned.threshold(aligned_threshold, relative=aligned_relative)
        config.aligned_threshold = setup.aligned_threshold
    return setup


def _has_values(dataset, f: str) -> bool:
    return f in dataset.get_field_schema() and dataset.exists(f).count() > 0


def _differences(old: AuditRunConfig, new: AuditRunConfig) -> dict:
    a, b = old.identity(), new.identity()
    return {k: (a.get(k), b.get(k)) for k in IDENTITY if not _same(a.get(k), b.get(k))}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def prepare(train, config: AuditRunConfig, *, resume: bool, overwrite: bool) -> bool:
    """Register the run (or recognise an earlier one with the same settings); call under
    the dataset lock. Returns True when it resumes."""
    import fiftyone as fo

    from curate.brain._audit_finish import declare_train_fields

    dataset = train._dataset
    key = config.audit_key
    resumed = False
    if key in dataset.list_brain_runs():
        old = dataset.get_brain_info(key).config
        if isinstance(old, AuditRunConfig) and not _differences(old, config) and resume:
            resumed = True
        elif not overwrite:
            what = (f"an audit with other settings (stored vs new: {_differences(old, config)})"
                    if isinstance(old, AuditRunConfig) else f"another brain run ({type(old).__name__})")
            if isinstance(old, AuditRunConfig) and not _differences(old, config):
                what = "an earlier audit with the same settings (resume=False was given)"
            raise ValueError(f"the key {key!r} already holds {what}; pass overwrite=True to replace it, "
                             "or choose another audit_key")
        else:
            dataset.delete_brain_run(key)  # its fields, datasets and files too
    if not resumed:
        owners = {}
        for k in dataset.list_brain_runs():
            cfg = dataset.get_brain_info(k).config
            owned = cfg.train_fields() if isinstance(cfg, AuditRunConfig) else (
                cfg.fields() if hasattr(cfg, "fields") else [k])
            owners.update({f: k for f in owned})
        for f in config.train_fields():
            if f in owners:
                raise ValueError(f"field {f!r} belongs to the brain run {owners[f]!r}; choose another audit_key")
            if _has_values(dataset, f) and not overwrite:
                raise ValueError(f"field {f!r} already holds values no audit wrote; pass overwrite=True "
                                 "or choose another audit_key")
        for name in (config.generated_dataset, config.copies_dataset):
            if fo.dataset_exists(name) and not overwrite:
                raise ValueError(f"a dataset named {name!r} exists but belongs to no audit of this "
                                 "dataset; delete it, or pass overwrite=True")
        out = Path(config.out_dir)
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise ValueError(f"out_dir {out} holds files curate did not write; choose an empty or new folder")
        remove_outputs(dataset, config, key)
        config.build().register_run(train, key, overwrite=True, cleanup=False)
    declare_train_fields(dataset, config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"written by curate's reproduction audit {key!r} of {dataset.name!r}\n")
    return resumed
