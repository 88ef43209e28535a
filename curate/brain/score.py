"""Score every image of a FiftyOne collection and store it as a brain run.

:func:`compute_score` runs any registered score kind (:mod:`curate.scores`);
:func:`compute_volume_growth` (the paper's score and its two exact relatives) and
:func:`compute_denoising_score` are the same call with their kind's settings spelled out.
Every score is oriented higher = more at risk; sort descending in the App.
"""
from __future__ import annotations

import torch

from curate.brain._engine import ScoreSummary, execute_plan, plan_run
from curate.sde import VP


def compute_score(samples, model, score: str | None = None, *, score_field: str | None = None,
                  seed: int = 0, batch_size: int = 64, device=None, size=None, channels: int | None = None,
                  resize: bool = False, num_workers: int = 2, model_description: str | None = None,
                  extra_fields: dict | None = None, progress=True, resume: bool = True,
                  overwrite: bool = False, **settings) -> ScoreSummary:
    """Store one registered score of each image of ``samples`` in a float field.

    Args:
        samples: a FiftyOne dataset or view of images (not empty).
        model: a score model (``eps(x, t)``); e.g. :class:`curate.ExactScore` or a network
            from :func:`curate.load_model`.
        score: the kind's name, one of :func:`curate.scores.names` (``curate.scores.table()``
            says what each computes and costs); None: :data:`curate.scores.DEFAULT_KIND`.
        score_field: float field for the score, also the brain key (default: the kind's
            name, which every other function reads by default too).
        seed: each image's randomness derives from it and the image's own bytes.
        batch_size: images per database write (and per scorer call).
        device: where the network runs (default: the model's).
        size, channels, resize: the image policy of :mod:`curate.data.loader`; left as None,
            taken from the first readable image and recorded in the run.
        num_workers: background image-decoding threads.
        model_description: free text recorded in the run (default: ``repr(model)``).
        extra_fields: further outputs of the kind to store, ``{output: field}`` (e.g.
            ``{"generation_logp": "logp"}`` for the tracker kinds).
        progress: True (rich bar), False, or ``f(fraction, label)``.
        resume: finish an earlier run with identical settings instead of refusing.
        overwrite: replace a score field that holds another run's (or anyone's) values.
        **settings: the kind's settings (``curate.scores.get(score).params``).

    Returns:
        :class:`ScoreSummary` (scored, failed, skipped, resumed).

    Raises:
        ValueError: unknown kind or setting, bad model or collection, before anything is written.
        DatabaseUnavailableError: the database went away; rerun to resume.
    """
    plan = plan_run(samples, model, score=score, score_field=score_field, extra_fields=extra_fields,
                    seed=seed, batch_size=batch_size, device=device, size=size, channels=channels,
                    resize=resize, num_workers=num_workers, model_description=model_description, **settings)
    return execute_plan(samples, plan, progress=progress, resume=resume, overwrite=overwrite)


def compute_volume_growth(
    samples, model, *, score_field: str = "volume_growth", method: str = "fd", stretch: str = "norm",
    axes: int = 1, sigma: float = 0.05, steps: int = 1, t_min: float = VP.t_min, batch_size: int = 64,
    seed: int = 0, dtype: torch.dtype = torch.float64, device=None, logp_field: str | None = None,
    score: str = "volume_growth", divergence: str = "auto", probes: int = 1, size=None,
    channels: int | None = None, resize: bool = False, num_workers: int = 2,
    model_description: str | None = None, progress=True, resume: bool = True, overwrite: bool = False,
) -> ScoreSummary:
    """Score each image of ``samples`` with :func:`curate.track_volume_growth`.

    Args:
        samples: a FiftyOne dataset or view of images (not empty).
        model: a score model (``eps(x, t)``).
        score_field: float field for the score, also the brain key of the run.
        score: what the field holds: ``"volume_growth"`` (log l_T, the paper's Algorithm 1),
            ``"divergence"`` (int div f dt along the trajectory: the full-dimensional log
            volume growth, Algorithm 1's N = D limit) or ``"generation_logp"``.
        divergence, probes: how div f is integrated when ``score`` or ``logp_field``
            needs it: ``"exact"`` (the model's own, or D JVPs), ``"hutchinson"`` with
            ``probes`` probes per step, or ``"auto"`` (exact when the model has it). With
            ``score="volume_growth"`` and no ``logp_field`` nothing needs it and it is skipped.
        method, stretch, axes, sigma, steps, t_min, seed, dtype, device: passed to the tracker
            (``dtype`` is the trajectories' dtype; float64 by default, see docs/design.md).
        batch_size: images per database write (and per tracker call).
        logp_field: optionally also store the PF-ODE generation log-probability.
        size, channels, resize, num_workers, model_description, progress, resume, overwrite:
            as in :func:`compute_score`.

    Returns:
        :class:`ScoreSummary`.

    Raises:
        ValueError: bad settings, model or collection, before anything is written.
        DatabaseUnavailableError: the database went away; rerun to resume.
    """
    from curate import scores

    tracker_kinds = tuple(k.name for k in scores.kinds() if k.group == "tracker")
    score = scores.get(score).name if score in scores.names() + ("log_growth",) else score
    if score not in tracker_kinds:
        raise ValueError(f"score must be one of {tracker_kinds}, got {score!r}")
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    if score == "volume_growth" and logp_field is None:
        divergence = "none"  # nothing needs div f: skip its cost
    dt = str(dtype).replace("torch.", "") if isinstance(dtype, torch.dtype) else dtype
    return compute_score(
        samples, model, score, score_field=score_field, seed=seed, batch_size=batch_size, device=device,
        size=size, channels=channels, resize=resize, num_workers=num_workers,
        model_description=model_description, extra_fields={"generation_logp": logp_field}, progress=progress,
        resume=resume, overwrite=overwrite, method=method, stretch=stretch, axes=axes, sigma=sigma,
        steps=steps, t_min=t_min, divergence=divergence, probes=probes, dtype=dt)


def compute_denoising_score(
    samples, model, *, score_field: str = "denoising_score", t: float = 0.01, draws: int = 4, seed: int = 0,
    batch_size: int = 256, device=None, size=None, channels: int | None = None, resize: bool = False,
    num_workers: int = 2, model_description: str | None = None, progress=True, resume: bool = True,
    overwrite: bool = False,
) -> ScoreSummary:
    """Store ``-curate.evaluate.denoising_loss(model, image, t, draws, seed)`` for each image.

    Args:
        samples: a FiftyOne dataset or view of images (not empty).
        model: a score model (``eps(x, t)``).
        score_field: float field for the score, also the brain key of the run.
        t: the diffusion time of the noised image.
        draws: noise draws z per image (network evaluations); each image's draws are
            seeded by its own bytes and ``seed``, so a score never depends on the batch.
        batch_size: images per database write.
        device, size, channels, resize, num_workers, model_description, progress, resume,
        overwrite: as in :func:`compute_score`.

    Returns:
        :class:`ScoreSummary`.

    Raises:
        ValueError: bad settings, model or collection, before anything is written.
        DatabaseUnavailableError: the database went away; rerun to resume.
    """
    return compute_score(
        samples, model, "denoising_score", score_field=score_field, seed=seed, batch_size=batch_size,
        device=device, size=size, channels=channels, resize=resize, num_workers=num_workers,
        model_description=model_description, progress=progress, resume=resume, overwrite=overwrite,
        t=t, draws=draws)
