"""What does the model copy? The reproduction audit of a training collection as a brain run.

:func:`compute_reproductions` draws generated samples (PF-ODE or SDE samplers, seed
blocks), saves them as PNGs and as a FiftyOne dataset, matches every one against the
training images (:mod:`curate.reproduction`) and stores, on each training sample, how
many generated samples copy it. :func:`curate.brain.evaluate_score` then says how well a
risk score predicts those counts on this model.

Resuming: a generated sample depends only on the seed and its index, blocks have a fixed
size, and the counts are recomputed from the stored generated samples at the end; so
calling again with the same settings after an interruption at any point finishes with
exactly what one uninterrupted run writes. ``dataset.delete_brain_run(audit_key)``
removes the fields, both datasets and the image files.

Sharding: under ``torchrun`` (``rank``/``world_size``, or RANK/WORLD_SIZE), every process
samples and matches every ``world_size``-th block into the same generated dataset, and
rank 0 writes the counts once all are done (:mod:`curate.brain.reproductions_sharded`).
"""
from __future__ import annotations

from curate.brain._audit_steps import AuditSummary
from curate.duplicates.choices import DEFAULT_RELATIVE
from curate.reproduction.match import CARLINI_ALPHA, CARLINI_N, GU_THRESHOLD, RMS_THRESHOLD

__all__ = ["compute_reproductions", "AuditSummary"]


def compute_reproductions(
    train, model, num_samples: int = 1024, *, audit_key: str = "reproductions", criterion: str = "carlini",
    method: str = "euler", steps: int = 100, t_min: float | None = None, seed: int = 0, batch_size: int = 256,
    out_dir=None, memory_mb: float = 512.0, aligned: bool = True, aligned_threshold: float | None = None,
    aligned_relative: float | None = DEFAULT_RELATIVE, mirror: bool = True, dedupe: bool = True,
    alpha: float = CARLINI_ALPHA, n_nearest: int = CARLINI_N, gu_threshold: float = GU_THRESHOLD,
    rms_threshold: float = RMS_THRESHOLD, device=None, model_description: str | None = None,
    num_workers: int = 2, progress=True, resume: bool = True, overwrite: bool = False,
    rank: int | None = None, world_size: int | None = None,
) -> AuditSummary:
    """Audit which training images of ``train`` the ``model`` reproduces.

    Args:
        train: a FiftyOne dataset or view of the training images (not empty; the images'
            size and channels must be the model's).
        model: a score model (``eps(x, t)``), e.g. :func:`curate.load_model` or
            :class:`curate.ExactScore`.
        num_samples: generated samples to draw.
        audit_key: brain key of the run and prefix of the training samples' fields.
        criterion: what ``<audit_key>`` counts: ``carlini``, ``gu``, ``rms`` or ``aligned``
            (the descriptor's edit-robust distance); every criterion gets its own field.
        method, steps, t_min: the sampler (:func:`curate.sample`).
        seed: sample j's noise depends only on (seed, j).
        batch_size: samples per block (one sampler call, one database write); part of
            the run's identity, so a resumed run draws the same blocks.
        out_dir: folder for the PNGs (default: under FiftyOne's dataset folder).
        memory_mb: working-memory bound of the matching's distance blocks
            (:mod:`curate.reproduction.match`).
        aligned: also record the near-duplicate descriptor's aligned distance to the
            nearest training image (``aligned_threshold`` default: dedupe's rule, the
            descriptor's 0.2 capped at ``aligned_relative`` x the set's background).
        mirror: a mirrored copy counts for the aligned criterion.
        dedupe: merge exact duplicates of the training set (as :func:`curate.find_memorized`).
        alpha, n_nearest, gu_threshold, rms_threshold: the pixel criteria.
        device: where the model samples and the matching runs (default: the model's / CPU).
        progress: True (rich bar), False, or ``f(fraction, label)``.
        resume: finish an earlier run with the same settings; overwrite: replace another.
        rank, world_size: this process's shard under torchrun (default: RANK/WORLD_SIZE).

    Returns:
        :class:`AuditSummary`.

    Raises:
        ValueError: a bad setting, an empty collection, images of another size than the
            model's, or a model whose first sample is NaN/Inf -- before anything is written.
    """
    from curate.brain._audit_setup import build_setup
    from curate.brain.reproductions_sharded import run_sharded

    setup = build_setup(
        train, model, num_samples=num_samples, audit_key=audit_key, criterion=criterion, method=method,
        steps=steps, t_min=t_min, seed=seed, batch_size=batch_size, out_dir=out_dir, memory_mb=memory_mb,
        aligned=aligned, aligned_threshold=aligned_threshold, aligned_relative=aligned_relative, mirror=mirror,
        dedupe=dedupe, device=device, model_description=model_description, num_workers=num_workers,
        alpha=alpha, n_nearest=n_nearest, gu_threshold=gu_threshold, rms_threshold=rms_threshold)
    return run_sharded(train, setup, progress=progress, resume=resume, overwrite=overwrite, rank=rank,
                       world_size=world_size)
