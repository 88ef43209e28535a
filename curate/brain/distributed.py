"""Score one FiftyOne view with several processes (``torchrun``), into one dataset.

Every process connects to the same MongoDB (``FIFTYONE_DATABASE_URI``) and gets a
fixed shard: the view's sample ids, sorted, every ``world_size``-th from its rank.
The shards depend only on the view, never on what is already scored, so they never
overlap, also when processes start at different moments or a run resumes after a
kill (then each shard skips the samples already done, like a one-process run).

Rank 0 alone registers the run (checks the score field, declares the fields)
before any rank scores, and stores the counts after every rank has finished;
the ranks agree through a ``gloo`` process group (CPU, no GPU needed). A bad
setting fails on every rank before anything is written.

Command line (the options of ``curate score``)::

    torchrun --nproc_per_node=2 -m curate score --shard-by-rank --dataset NAME --exact-score
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class ShardSummary:
    """One rank's part (``scored``, ``failed``, ``skipped`` of its shard of ``shard_size``)
    and, on every rank, the totals over all ranks."""

    brain_key: str
    rank: int
    world_size: int
    shard_size: int
    scored: int
    failed: int
    skipped: int
    resumed: bool
    total_scored: int
    total_failed: int
    total_skipped: int


def rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_ids(ids, rank: int, world_size: int) -> list[str]:
    """The ids of ``rank``'s shard: sorted ids, every ``world_size``-th from ``rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    return sorted(ids)[rank::world_size]


class _Group:
    """The few collectives the ranks need; works with one process and no group too."""

    def __init__(self, world_size: int):
        import torch.distributed as dist

        self.dist = dist
        self.own = False
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
            self.own = True
        self.active = world_size > 1

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.dist.get_world_size()
        self.dist.all_gather_object(out, obj)
        return out

    def rank0_verdict(self, rank: int, decide) -> dict:
        """``decide()`` (a dict) run on rank 0 only, handed to every rank; a ValueError or
        RuntimeError there is raised as a ValueError on every rank, so all stop together."""
        verdict = None
        if rank == 0:
            try:
                verdict = decide()
            except (ValueError, RuntimeError) as e:
                verdict = {"error": str(e)}
        verdict = self.gather(verdict)[0]
        if "error" in verdict:
            raise ValueError(verdict["error"])
        return verdict

    def close(self) -> None:
        if self.own:
            self.dist.destroy_process_group()


def _first_error(items) -> str | None:
    return next((e for e in items if e), None)


def score_sharded(samples, model, score: str | None = None, *, rank: int | None = None,
                  world_size: int | None = None,
                  resume: bool = True, overwrite: bool = False, progress=True,
                  **settings) -> ShardSummary:
    """:func:`curate.brain.compute_score` on this rank's shard of ``samples``.

    Call it in every process of a ``torchrun`` job with the same arguments; ``settings``
    are those of ``compute_score`` (score, score_field, the kind's settings, ...).
    Without torchrun (WORLD_SIZE unset) it scores everything in this process.

    Raises:
        ValueError: bad settings/model/collection, or the score field holds another
            run's results (on every rank, before anything is written).
    """
    from curate.brain._lock import dataset_lock
    from curate.brain._engine import database_errors, plan_run, prepare_run, save_results, score_pending, todo

    env_rank, env_world = rank_and_world()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if "device" not in settings and torch.cuda.is_available():
        settings["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    group = _Group(world_size)
    try:
        # 1. every rank checks the settings; all fail if one does.
        plan, err = None, None
        try:
            plan = plan_run(samples, model, score=score, **settings)
        except ValueError as e:
            err = str(e)
        err = _first_error(group.gather(err))
        if err:
            raise ValueError(err)
        field = plan.config.score_field
        dataset = samples._dataset
        # 2. rank 0 registers the run once; the others wait for its verdict.
        def register() -> dict:
            with database_errors(samples, f"preparing the run {field!r}"):
                with dataset_lock(dataset):
                    return {"resumed": prepare_run(samples, plan.config, resume=resume, overwrite=overwrite)}

        verdict = group.rank0_verdict(rank, register)
        if rank != 0:
            dataset._reload(hard=True)  # see the fields rank 0 declared
        # 3. each rank scores what is left of its fixed shard.
        counts = {"saved": 0}
        with database_errors(samples, f"scoring shard {rank} of {world_size} into {field!r}",
                             done=lambda: counts["saved"]):
            mine = shard_ids(samples.values("id"), rank, world_size)
            pending = todo(samples.select(mine), plan.config)
            skipped = len(mine) - pending.count()
            label = f"rank {rank}/{world_size}: {plan.config.score} -> {field}"
            scored, failed = score_pending(pending, plan, progress=progress if rank == 0 else False,
                                           label=label, counts=counts)
        parts = group.gather((scored, failed, skipped))
        # 4. rank 0 stores the counts of the whole run.
        if rank == 0:
            with database_errors(samples, f"saving the results of {field!r}"):
                with dataset_lock(dataset):
                    save_results(samples, plan.config, skipped=sum(p[2] for p in parts))
        group.gather(None)  # nobody leaves before the run is complete
        return ShardSummary(field, rank, world_size, len(mine), scored, failed, skipped,
                            verdict["resumed"], sum(p[0] for p in parts), sum(p[1] for p in parts),
                            sum(p[2] for p in parts))
    finally:
        group.close()
