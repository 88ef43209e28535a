"""The steps of an audit after its set-up: sample blocks, finish (counts, copies,
results), and the generated dataset; shared by one process and torchrun shards."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AuditSummary:
    """What one call did and what the audit found.

    ``generated`` samples drawn by this call, all torchrun ranks together (``skipped``:
    already stored), ``failed``
    NaN/Inf samples (all calls), ``copies`` generated samples that copy a training image
    under the chosen criterion, ``reproduced`` training samples copied at least once,
    ``train_failed`` unreadable training images.
    """

    audit_key: str
    generated: int
    skipped: int
    failed: int
    copies: int
    reproduced: int
    train_failed: int
    resumed: bool
    generated_dataset: str
    copies_dataset: str
    complete: bool = True


def sample_blocks(train, setup, generated, blocks, *, progress, label: str) -> int:
    """Draw, save, match and store the given blocks; returns the samples generated."""
    from curate import _progress
    from curate.brain._audit_blocks import run_block

    done = 0
    total = sum(e - s for s, e in blocks)
    with _progress.progress(total, label, progress) as advance:
        for s, e in blocks:
            samples = run_block(setup, s, e)
            generated.add_samples(samples, progress=False)  # one insert per block
            done += e - s
            advance(e - s)
    return done


def finish(train, setup, generated, *, skipped: int, generated_now: int, resumed: bool) -> AuditSummary:
    """Counts on the training samples, the copies dataset, the run's results (rank 0)."""
    from curate.brain._audit_finish import aggregate, build_copies, write_train_fields
    from curate.brain._audit_run import save_results
    from curate.brain._lock import dataset_lock

    c = setup.config
    dataset = train._dataset
    counts, m_valid = aggregate(setup, generated)
    write_train_fields(dataset, setup, counts, m_valid)
    n_copies = build_copies(setup, generated, counts, persistent=dataset.persistent)
    chosen = counts[c.criterion]
    failed = generated.match_tags("failed").count()
    summary = {"generated": m_valid, "failed": failed, "copies": {k: int(generated.match(
        {f"copy_{k}": True}).count()) for k in c.criteria}, "reproduced_samples": int((chosen > 0).sum()),
        "reproduced_groups": int(setup.train.group[chosen.to(setup.train.group.device) > 0].unique().numel()),
        "train_failed": len(setup.failed), "aligned_threshold": c.aligned_threshold,
        "n_train": setup.train.n, "n_unique": setup.train.n_unique}
    with dataset_lock(dataset):
        save_results(dataset, c, complete=True, summary=summary)
    return AuditSummary(c.audit_key, generated_now, skipped, failed, n_copies, summary["reproduced_samples"],
                        len(setup.failed), resumed, c.generated_dataset, c.copies_dataset)


def open_generated(train, config):
    """The generated dataset of an audit (created empty, with its schema, if missing)."""
    import fiftyone as fo

    from curate.brain._audit_blocks import declare_fields

    if fo.dataset_exists(config.generated_dataset):
        ds = fo.load_dataset(config.generated_dataset)
    else:
        ds = fo.Dataset(config.generated_dataset, persistent=train._dataset.persistent)
    if ds.media_type is None and ds.count() == 0:
        ds.media_type = "image"  # now, not at the first insert: ranks never write the dataset's document
    declare_fields(ds)  # also after a kill between the creation and the declarations
    return ds
