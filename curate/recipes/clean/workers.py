"""The arms' trainings and samplings in worker processes (``workers`` > 1).

A small U-Net on a CPU uses one core well and gains little from more threads, so a
machine with N cores trains N models at once in N processes: about N times the
throughput of one process with N threads. Each model is computed exactly as in one
process (the same images, seeds and ``threads``), so a run's answer does not depend on
``workers``; the stages' markers are written by the recipe's own process as results come
back, so a run killed at any point resumes as usual.

The parent reads every arm's images from FiftyOne and sends them with the job: workers
need no database.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor

from curate.recipes._common import timed
from curate.recipes.clean import stages
from curate.recipes.clean.layout import Layout
from curate.recipes.clean.settings import run_key


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to kill this worker when the recipe's process dies, so a run
    killed with SIGKILL leaves no training writing into the folder its rerun trains into."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _start_worker(threads: int, parent: int) -> None:
    import torch

    _die_with_parent(parent)
    torch.set_num_threads(threads)


def _train(lay: Layout, cfg: dict, arm: str, seed: int, images) -> dict:
    return timed(lambda: stages.train_images(lay, cfg, arm, seed, images, progress=False),
                 f"train_{run_key(arm, seed)}")()


def _sample(lay: Layout, cfg: dict, arm: str, seed: int) -> dict:
    return timed(lambda: stages.sample_arm(lay, cfg, arm, seed, progress=False), f"sample_{run_key(arm, seed)}")()


class ModelWorkers:
    """``n`` worker processes (spawned, each with ``threads`` torch threads) that train and
    sample the arms' models; a context manager."""

    def __init__(self, n: int, threads: int):
        if n < 2:
            raise ValueError(f"ModelWorkers needs n >= 2 processes, got {n}")
        self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker, initargs=(int(threads), os.getpid()))

    def train(self, lay: Layout, cfg: dict, arm: str, seed: int) -> Future:
        """Train ``arm`` with seed ``seed`` in a worker (its images read here, now)."""
        return self._pool.submit(_train, lay, cfg, arm, seed, stages.arm_images(lay, cfg, arm))

    def sample(self, lay: Layout, cfg: dict, arm: str, seed: int) -> Future:
        return self._pool.submit(_sample, lay, cfg, arm, seed)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the running jobs; with ``cancel``, drop the queued ones first."""
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> "ModelWorkers":
        return self

    def __exit__(self, exc_type, *_) -> bool:
        self.close(cancel=exc_type is not None)
        return False
