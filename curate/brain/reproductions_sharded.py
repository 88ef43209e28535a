"""The audit from several processes (``torchrun``), into one generated dataset.

As :mod:`curate.brain.distributed` does for scores: every process connects to the same
MongoDB (``FIFTYONE_DATABASE_URI``) and gets a fixed shard, here of sample *blocks*:
every ``world_size``-th block from its rank. The shards depend only on the settings,
so they never overlap, also when a run resumes after a kill (each rank redoes only its
unfinished blocks). Rank 0 alone registers the run and creates the generated dataset
(with its whole schema, so the ranks' inserts never change the dataset document), and
writes the counts after every rank has finished; the ranks agree through a ``gloo``
group. A bad setting fails on every rank before anything is written.

Command line::

    torchrun --nproc_per_node=2 -m curate audit --shard-by-rank --dataset NAME --model CKPT --samples 8192

Without torchrun (WORLD_SIZE unset) one process does everything.
"""
from __future__ import annotations

import os

import torch


def run_sharded(train, setup, *, progress=True, resume=True, overwrite=False, rank=None, world_size=None):
    """Run ``setup`` (checked, nothing written) on this rank's blocks; see the module doc."""
    import fiftyone as fo

    from curate.brain._audit_run import load_results
    from curate.brain._audit_setup import prepare
    from curate.brain._engine import database_errors
    from curate.brain._lock import dataset_lock
    from curate.brain.distributed import _Group, rank_and_world
    from curate.brain._audit_steps import AuditSummary, finish, open_generated, sample_blocks
    from curate.brain._audit_blocks import pending_blocks

    env_rank, env_world = rank_and_world()
    rank = env_rank if rank is None else int(rank)
    world_size = env_world if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    if world_size > 1 and setup.device is None and torch.cuda.is_available():
        setup.device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    c = setup.config
    dataset = train._dataset
    group = _Group(world_size)
    try:
        # 1. rank 0 registers (or resumes) the run and creates the generated dataset.
        def register() -> dict:
            with database_errors(train, f"preparing the audit {c.audit_key!r}"):
                with dataset_lock(dataset):
                    resumed = prepare(train, c, resume=resume, overwrite=overwrite)
                    open_generated(train, c)
            return {"resumed": resumed}

        verdict = group.rank0_verdict(rank, register)
        if rank != 0:
            dataset._reload(hard=True)
        generated = open_generated(train, c)
        # 2. each rank samples and matches what is left of its blocks.
        with database_errors(train, f"auditing shard {rank} of {world_size} into {c.generated_dataset!r}"):
            mine = setup.blocks(rank, world_size)
            todo = pending_blocks(generated, mine)
            skipped = sum(e - s for s, e in mine) - sum(e - s for s, e in todo)
            label = f"audit {c.audit_key}: sample + match" + (f" (rank {rank}/{world_size})" if world_size > 1 else "")
            done = sample_blocks(train, setup, generated, todo, progress=progress if rank == 0 else False,
                                 label=label)
        parts = group.gather((done, skipped))
        # 3. rank 0 writes the counts of the whole audit.
        out = None
        # nothing new and the counts already written: nothing to redo
        finished = (sum(p[0] for p in parts) == 0 and verdict["resumed"] and fo.dataset_exists(c.copies_dataset)
                    and getattr(load_results(dataset, c.audit_key), "complete", False))
        if rank == 0 and not finished:
            generated.reload()
            with database_errors(train, f"writing the counts of {c.audit_key!r}"):
                out = finish(train, setup, generated, skipped=sum(p[1] for p in parts),
                             generated_now=sum(p[0] for p in parts), resumed=verdict["resumed"])
        group.gather(None)  # nobody leaves before the counts are written
        if out is None:
            dataset._reload(hard=True)  # see the results rank 0 stored
            res = load_results(dataset, c.audit_key)
            s = res.summary if res is not None else {}
            out = AuditSummary(c.audit_key, sum(p[0] for p in parts), sum(p[1] for p in parts), s.get("failed", 0),
                               s.get("copies", {}).get(c.criterion, 0), s.get("reproduced_samples", 0),
                               len(setup.failed), verdict["resumed"], c.generated_dataset, c.copies_dataset)
        return out
    finally:
        group.close()
