"""``compute_volume_growth``: score every image of a FiftyOne collection.

In the style of :mod:`fiftyone.brain`: the scores go to a float field (default
``volume_growth``; higher = easier for the model to reproduce), written batch by
batch with ``set_values(..., key_field="id")``, and the run is registered as a
brain run under the key = the score field (see :mod:`curate.brain.runs`).

Resuming: each image's score depends only on the image, the settings and the seed
(:func:`curate.track_volume_growth`), so a run that was interrupted is finished by
calling again with the same settings: samples that already hold a score or an
error for this run are skipped, the others are scored. A score field that holds a
*different* run's results (other model or settings) is an error unless
``overwrite=True``.

Failures: an image that cannot be read, does not fit the size/channel policy, or
whose trajectory goes non-finite gets no score and a message in ``<field>_error``;
every other image is scored.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from curate.brain import runs
from curate.brain.progress import progress_bar


@dataclass
class ScoreSummary:
    """What one call did: ``scored`` + ``failed`` new samples, ``skipped`` already done."""

    brain_key: str
    scored: int
    failed: int
    skipped: int
    resumed: bool


def _describe(model) -> str:
    text = repr(model)
    return text if len(text) <= 500 else text[:497] + "..."


def _check_field_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} must be a plain field name (a Python identifier), got {name!r}")


def _has_values(dataset, field: str) -> bool:
    return field in dataset.get_field_schema() and dataset.exists(field).count() > 0


def _prepare_run(samples, config: runs.VolumeGrowthConfig, *, resume: bool, overwrite: bool) -> bool:
    """Register the run; returns True when an earlier run of the same settings resumes."""
    dataset = samples._dataset
    key = config.score_field
    fields = [f for f in (config.score_field, config.error_field, config.logp_field) if f]
    if key in dataset.list_brain_runs():
        info = dataset.get_brain_info(key)
        old = info.config
        same = isinstance(old, runs.VolumeGrowthConfig) and old.identity() == config.identity()
        if same and resume:
            # Same settings: keep the stored values, refresh the run's config/view.
            runs.VolumeGrowth(config).register_run(samples, key, overwrite=True, cleanup=False)
            return True
        if not overwrite:
            if same:
                why = "an earlier run with the same settings (resume=False was given)"
            elif isinstance(old, runs.VolumeGrowthConfig):
                diff = {k: (v, config.identity()[k]) for k, v in old.identity().items()
                        if v != config.identity()[k]}
                why = f"a run with other settings (stored vs new: {diff})"
            else:
                why = f"another brain run ({type(old).__name__})"
            raise ValueError(
                f"field {key!r} already holds the results of {why}; pass overwrite=True to "
                f"replace them, or choose another score_field"
            )
        dataset.delete_brain_run(key)  # removes the old run's fields too
    for f in fields:
        if _has_values(dataset, f) and not overwrite:
            raise ValueError(
                f"field {f!r} already holds values that no volume-growth run wrote; pass "
                "overwrite=True to replace them, or choose another score_field"
            )
    for f in fields:
        if f in dataset.get_field_schema():
            dataset.delete_sample_field(f)
    runs.VolumeGrowth(config).register_run(samples, key, overwrite=True, cleanup=False)
    return False


def compute_volume_growth(
    samples,
    model,
    *,
    score_field: str = "volume_growth",
    method: str = "fd",
    stretch: str = "norm",
    axes: int = 1,
    sigma: float = 0.05,
    steps: int = 1,
    t_min: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
    logp_field: str | None = None,
    size=None,
    channels: int | None = None,
    resize: bool = False,
    num_workers: int = 2,
    model_description: str | None = None,
    progress=True,
    resume: bool = True,
    overwrite: bool = False,
) -> ScoreSummary:
    """Score each image of ``samples`` with :func:`curate.track_volume_growth`.

    Args:
        samples: a FiftyOne dataset or view of images.
        model: a score model (``eps(x, t)``); e.g. :class:`curate.ExactScore` or a
            network from :func:`curate.load_model`.
        score_field: float field for log l_T, also the brain key of the run.
        method, stretch, axes, sigma, steps, t_min, seed, dtype, device: passed to the tracker
            (``dtype`` is the trajectories' dtype; float64 by default, see design §2).
        batch_size: images per database write (and per tracker call).
        logp_field: optionally also store the PF-ODE generation log-probability
            (needs a divergence; exact when the model provides one).
        size, channels, resize: the image policy of :mod:`curate.data.loader`; left
            as None, taken from the first readable image and recorded in the run.
        num_workers: background image-decoding threads.
        model_description: free text recorded in the run (default: ``repr(model)``).
        progress: True (rich bar), False, or ``f(fraction, label)``.
        resume: finish an earlier run with identical settings instead of refusing.
        overwrite: replace a score field that holds another run's (or anyone's) values.

    Returns:
        :class:`ScoreSummary`.
    """
    import fiftyone.core.fields as fof

    from curate.data.loader import iter_batches, resolve_policy
    from curate.models.base import check_model
    from curate.volume import track_volume_growth

    check_model(model)
    _check_field_name(score_field, "score_field")
    error_field = f"{score_field}_error"
    if logp_field is not None:
        _check_field_name(logp_field, "logp_field")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    policy = resolve_policy(samples, size=size, channels=channels, resize=resize)
    divergence = "auto" if logp_field else None
    config = runs.VolumeGrowthConfig(
        score_field, error_field=error_field, logp_field=logp_field,
        model=type(model).__module__ + "." + type(model).__qualname__,
        model_description=model_description or _describe(model),
        model_fingerprint=runs.model_fingerprint(model), tracker_method=method, stretch=stretch,
        axes=int(axes),
        sigma=float(sigma), steps=int(steps), t_min=float(t_min), seed=int(seed),
        dtype=str(dtype).replace("torch.", ""), image_size=list(policy.size),
        image_channels=policy.channels, resize=bool(policy.resize), versions=runs.versions(),
    )
    # Check settings and model on one blank image before touching the database, so a
    # bad argument fails with the tracker's own message and loses nothing.
    track_volume_growth(model, torch.zeros((1, policy.channels, *policy.size)), axes=axes,
                        sigma=sigma, steps=steps, t_min=t_min, method=method, stretch=stretch,
                        seed=seed, divergence=divergence, on_error="mark", dtype=dtype, device=device)

    dataset = samples._dataset
    resumed = _prepare_run(samples, config, resume=resume, overwrite=overwrite)
    dataset.add_sample_field(score_field, fof.FloatField)
    dataset.add_sample_field(error_field, fof.StringField)
    if logp_field:
        dataset.add_sample_field(logp_field, fof.FloatField)

    total = samples.count()
    todo = samples.exists(score_field, False).exists(error_field, False)
    n_todo = todo.count()
    skipped = total - n_todo
    scored = failed = 0
    with progress_bar(n_todo, f"volume growth -> {score_field}", enabled=progress) as advance:
        for batch in iter_batches(todo, batch_size=batch_size, size=policy.size,
                                  channels=policy.channels, resize=policy.resize,
                                  num_workers=num_workers):
            errors = dict(batch.failed)
            values, logps = {}, {}
            if batch.ids:
                res = track_volume_growth(
                    model, batch.images, axes=axes, sigma=sigma, steps=steps, t_min=t_min,
                    method=method, stretch=stretch, seed=seed, divergence=divergence, on_error="mark",
                    dtype=dtype, device=device,
                )
                for i, sid in enumerate(batch.ids):
                    if bool(res.failed[i]):
                        errors[sid] = "tracker: " + str(res.errors.get(i, "non-finite trajectory"))
                        continue
                    values[sid] = float(res.log_growth[i])
                    if logp_field:
                        logps[sid] = float(res.generation_logp[i])
            # Scores first, then errors: a kill in between only re-tries the failures.
            if values:
                if logp_field:
                    dataset.set_values(logp_field, logps, key_field="id")
                dataset.set_values(score_field, values, key_field="id")
            if errors:
                dataset.set_values(error_field, errors, key_field="id")
            scored += len(values)
            failed += len(errors)
            advance(len(values) + len(errors))

    all_failed = samples.exists(error_field).count()
    all_scored = samples.exists(score_field).count()
    results = runs.VolumeGrowthResults(samples, config, score_field, scored=all_scored,
                                       failed=all_failed, skipped=skipped)
    results.backend.save_run_results(samples, score_field, results)
    return ScoreSummary(score_field, scored, failed, skipped, resumed)
