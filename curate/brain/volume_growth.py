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

Database lost: the scores written so far stay; the run stops with a
:class:`DatabaseUnavailableError` that says to rerun the same command.

Concurrency: the dataset's run records and field schema change only under
:func:`curate.brain._lock.dataset_lock`, so two runs with different fields (or
several processes, :mod:`curate.brain.distributed`) can share one dataset.

Failures: an image that cannot be read, does not fit the size/channel policy, or
whose trajectory goes non-finite gets no score and a message in ``<field>_error``;
every other image is scored.
"""
from __future__ import annotations

import contextlib
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


#: What a run can store in its score field (every one: higher = easier to reproduce).
SCORES = ("log_growth", "divergence", "generation_logp")


def _score_of(res, score: str) -> torch.Tensor:
    """log l_T (Algorithm 1), int div f dt (the full-dimensional log volume growth),
    or the PF-ODE generation log-probability."""
    return {"log_growth": res.log_growth, "divergence": res.divergence_integral,
            "generation_logp": res.generation_logp}[score]


def _describe(model) -> str:
    text = repr(model)
    return text if len(text) <= 500 else text[:497] + "..."


class DatabaseUnavailableError(RuntimeError):
    """The database went away during a run; what was saved stays, rerun to resume."""


def _check_field_name(name: str, what: str) -> None:
    from curate.brain._names import check_field_name

    check_field_name(name, what)


def _has_values(dataset, field: str) -> bool:
    return field in dataset.get_field_schema() and dataset.exists(field).count() > 0


def _model_shape(model):
    """(channels, height, width) a model was built for, when it says so (else None)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        return None
    c = cfg.get("channels", cfg.get("in_channels"))
    s = cfg.get("image_size", cfg.get("sample_size"))
    if c is None or s is None:
        return None
    h, w = (s, s) if isinstance(s, int) else tuple(s)
    return int(c), int(h), int(w)


@dataclass
class _Plan:
    """Everything a run needs, checked before the database is touched."""

    config: object  # runs.VolumeGrowthConfig or runs.DenoisingScoreConfig
    policy: object
    tracker: dict
    batch_size: int
    num_workers: int
    scorer: object = None  # images (B, C, H, W) -> (values, logps | None, {index: error})


def _tracker_scorer(model, tracker: dict, score: str, want_logp: bool):
    """The scorer of a volume-growth run: one tracker call per batch."""
    from curate.volume import track_volume_growth

    def scorer(images):
        res = track_volume_growth(model, images, **tracker)
        errors = {i: "tracker: " + str(res.errors.get(i, "non-finite trajectory"))
                  for i in range(images.shape[0]) if bool(res.failed[i])}
        return _score_of(res, score), (res.generation_logp if want_logp else None), errors

    return scorer


def check_collection(samples, model, *, batch_size, size, channels, resize):
    """The image policy of a non-empty collection whose images fit ``model`` (ValueError if not)."""
    from curate.data.loader import resolve_policy

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if samples.count() == 0:
        raise ValueError("the collection to score is empty (0 samples); nothing to do "
                         "(check --tags / --saved-view)")
    policy = resolve_policy(samples, size=size, channels=channels, resize=resize)
    want = _model_shape(model)
    if want is not None and want != (policy.channels, *policy.size):
        raise ValueError(
            f"the model was built for images of {want[0]} channel(s), {want[1]}x{want[2]}, but this "
            f"collection's images are {policy.channels} channel(s), {policy.size[0]}x{policy.size[1]}; "
            "use a checkpoint trained on this data, or pass size=/channels= (with resize=True) to "
            "convert the images"
        )
    return policy


def plan_run(samples, model, *, score_field="volume_growth", method="fd", stretch="norm", axes=1,
             sigma=0.05, steps=1, t_min=1e-3, batch_size=64, seed=0, dtype=torch.float64, device=None,
             logp_field=None, score="log_growth", divergence="auto", probes=1, size=None, channels=None,
             resize=False, num_workers=2, model_description=None) -> _Plan:
    """Check settings, model and collection; writes nothing. Raises ValueError."""
    from curate.models.base import check_model
    from curate.volume import track_volume_growth

    check_model(model)
    _check_field_name(score_field, "score_field")
    error_field = f"{score_field}_error"
    if logp_field is not None:
        _check_field_name(logp_field, "logp_field")
        if logp_field in (score_field, error_field):
            raise ValueError(f"logp_field {logp_field!r} collides with the score/error fields")
    policy = check_collection(samples, model, batch_size=batch_size, size=size, channels=channels,
                              resize=resize)
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    if logp_field is None and score == "log_growth":
        divergence = None  # nothing needs div f: skip its cost
    elif divergence == "auto":
        divergence = "exact" if callable(getattr(model, "divergence", None)) else "hutchinson"
    tracker = dict(axes=axes, sigma=sigma, steps=steps, t_min=t_min, method=method, stretch=stretch,
                   seed=seed, divergence=divergence, probes=int(probes), on_error="mark", dtype=dtype,
                   device=device)
    # Check settings and model on one blank image before touching the database, so a
    # bad argument fails with the tracker's own message and loses nothing.
    probe = torch.zeros((1, policy.channels, *policy.size))
    try:
        res = track_volume_growth(model, probe, **tracker)
    except (ValueError, TypeError):
        raise
    except Exception as e:  # the network itself cannot take these images
        raise ValueError(f"the model failed on a blank {tuple(probe.shape[1:])} image before any "
                         f"scoring: {type(e).__name__}: {e}") from e
    if bool(res.failed[0]):
        raise ValueError("the model gives NaN/Inf on a blank image "
                         f"({res.errors.get(0, 'non-finite trajectory')}); refusing to score with it")
    config = runs.VolumeGrowthConfig(
        score_field, error_field=error_field, logp_field=logp_field, score=score, divergence=divergence,
        probes=int(probes) if divergence == "hutchinson" else None,
        model=type(model).__module__ + "." + type(model).__qualname__,
        model_description=model_description or _describe(model),
        model_fingerprint=runs.model_fingerprint(model), tracker_method=method, stretch=stretch,
        axes=int(axes), sigma=float(sigma), steps=int(steps), t_min=float(t_min), seed=int(seed),
        dtype=str(dtype).replace("torch.", ""), image_size=list(policy.size),
        image_channels=policy.channels, resize=bool(policy.resize), versions=runs.versions(),
    )
    return _Plan(config, policy, tracker, int(batch_size), num_workers,
                 _tracker_scorer(model, tracker, score, logp_field is not None))


def _prepare_run(samples, config, *, resume: bool, overwrite: bool) -> bool:
    """Register the run and declare its fields (call under :func:`dataset_lock`).

    Returns True when an earlier run of the same settings resumes."""
    import fiftyone.core.fields as fof

    dataset = samples._dataset
    key = config.score_field
    fields = config.fields()
    resumed = False
    if key in dataset.list_brain_runs():
        info = dataset.get_brain_info(key)
        old = info.config
        same = type(old) is type(config) and old.identity() == config.identity()
        if same and resume:
            # Same settings: keep the stored values, refresh the run's config/view.
            config.build().register_run(samples, key, overwrite=True, cleanup=False)
            resumed = True
        elif not overwrite:
            if same:
                why = "an earlier run with the same settings (resume=False was given)"
            elif type(old) is type(config):
                diff = {k: (v, config.identity()[k]) for k, v in old.identity().items()
                        if v != config.identity()[k]}
                why = f"a run with other settings (stored vs new: {diff})"
            else:
                why = f"another brain run ({type(old).__name__})"
            raise ValueError(
                f"field {key!r} already holds the results of {why}; pass overwrite=True to "
                f"replace them, or choose another score_field"
            )
        else:
            dataset.delete_brain_run(key)  # removes the old run's fields too
    if not resumed:
        # A field of another run (its error or logp field) or of the user: refuse.
        owners = {f: k for k in dataset.list_brain_runs()
                  for f in _run_fields(dataset, k)}
        for f in fields:
            if f in owners:
                raise ValueError(f"field {f!r} belongs to the brain run {owners[f]!r}; choose "
                                 "another score_field (or delete that run)")
            if _has_values(dataset, f) and not overwrite:
                raise ValueError(
                    f"field {f!r} already holds values that no curate scoring run wrote; pass "
                    "overwrite=True to replace them, or choose another score_field"
                )
        for f in fields:
            if f in dataset.get_field_schema():
                dataset.delete_sample_field(f)
        config.build().register_run(samples, key, overwrite=True, cleanup=False)
    schema = dataset.get_field_schema()
    for f, kind in ((config.score_field, fof.FloatField), (config.error_field, fof.StringField),
                    (getattr(config, "logp_field", None), fof.FloatField)):
        if f and f not in schema:
            dataset.add_sample_field(f, kind)
    return resumed


def _run_fields(dataset, key) -> list[str]:
    cfg = dataset.get_brain_info(key).config
    return cfg.fields() if isinstance(cfg, runs.ScoreRunConfig) else [key]


def _todo(samples, config):
    return samples.exists(config.score_field, False).exists(config.error_field, False)


def score_pending(todo, model, plan: _Plan, *, progress=True, label=None, counts=None) -> tuple[int, int]:
    """Score the samples of ``todo`` (declared fields, registered run); returns
    (scored, failed). Writes after every batch, scores before errors; ``counts``
    (a dict) is kept up to date with the samples saved so far."""
    from curate.data.loader import iter_batches

    c, p = plan.config, plan.policy
    logp_field = getattr(c, "logp_field", None)
    dataset = todo._dataset
    n_todo = todo.count()
    scored = failed = 0
    with progress_bar(n_todo, label or f"volume growth -> {c.score_field}", enabled=progress) as advance:
        for batch in iter_batches(todo, batch_size=plan.batch_size, size=p.size, channels=p.channels,
                                  resize=p.resize, num_workers=plan.num_workers):
            errors = dict(batch.failed)
            values, logps = {}, {}
            if batch.ids:
                vals, lps, bad = plan.scorer(batch.images)
                for i, sid in enumerate(batch.ids):
                    if i in bad:
                        errors[sid] = bad[i]
                        continue
                    values[sid] = float(vals[i])
                    if logp_field:
                        logps[sid] = float(lps[i])
            # Scores first, then errors: a kill in between only re-tries the failures.
            if values:
                if logp_field:
                    dataset.set_values(logp_field, logps, key_field="id")
                dataset.set_values(c.score_field, values, key_field="id")
            if errors:
                dataset.set_values(c.error_field, errors, key_field="id")
            scored += len(values)
            failed += len(errors)
            if counts is not None:
                counts["saved"] = scored + failed
            advance(len(values) + len(errors))
    return scored, failed


def save_results(samples, config, *, skipped: int) -> None:
    """Store the run's counts (call under :func:`dataset_lock`)."""
    all_failed = samples.exists(config.error_field).count()
    all_scored = samples.exists(config.score_field).count()
    results = config.results_cls(samples, config, config.score_field, scored=all_scored,
                                 failed=all_failed, skipped=skipped)
    results.backend.save_run_results(samples, config.score_field, results)


@contextlib.contextmanager
def database_errors(samples, what: str, done=None):
    """Turn a lost MongoDB connection into :class:`DatabaseUnavailableError` saying how to resume."""
    from pymongo.errors import PyMongoError

    try:
        yield
    except PyMongoError as e:
        import fiftyone as fo

        where = fo.config.database_uri or "FiftyOne's own mongod"
        saved = f" {done()} sample(s) of this call were saved;" if done is not None else ""
        raise DatabaseUnavailableError(
            f"lost the database ({where}) while {what}: {type(e).__name__}: {str(e)[:300]}.{saved} "
            "every score written so far is kept. When the database is reachable again, run the "
            "same command with the same settings to resume: finished samples are skipped."
        ) from None


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
    score: str = "log_growth",
    divergence: str = "auto",
    probes: int = 1,
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
        samples: a FiftyOne dataset or view of images (not empty).
        model: a score model (``eps(x, t)``); e.g. :class:`curate.ExactScore` or a
            network from :func:`curate.load_model`.
        score_field: float field for the score, also the brain key of the run.
        score: what the field holds: ``"log_growth"`` (log l_T, the paper's Algorithm 1),
            ``"divergence"`` (int div f dt along the trajectory: the full-dimensional log
            volume growth, Algorithm 1's N = D limit) or ``"generation_logp"``.
        divergence, probes: how div f is integrated when ``score`` or ``logp_field``
            needs it: ``"exact"`` (the model's own, or D JVPs), ``"hutchinson"`` with
            ``probes`` probes per step, or ``"auto"`` (exact when the model has it).
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

    Raises:
        ValueError: bad settings, model or collection, before anything is written.
        DatabaseUnavailableError: the database went away; rerun to resume.
    """
    plan = plan_run(samples, model, score_field=score_field, method=method, stretch=stretch,
                    axes=axes, sigma=sigma, steps=steps, t_min=t_min, batch_size=batch_size,
                    seed=seed, dtype=dtype, device=device, logp_field=logp_field, score=score,
                    divergence=divergence, probes=probes, size=size,
                    channels=channels, resize=resize, num_workers=num_workers,
                    model_description=model_description)
    return execute_plan(samples, model, plan, progress=progress, resume=resume, overwrite=overwrite)


def execute_plan(samples, model, plan: _Plan, *, progress, resume: bool, overwrite: bool,
                 label: str | None = None) -> ScoreSummary:
    """Register (or resume) the run of a checked ``plan``, score what is left, store the counts."""
    from curate.brain._lock import dataset_lock

    score_field = plan.config.score_field
    dataset = samples._dataset
    with database_errors(samples, f"preparing the run {score_field!r}"):
        with dataset_lock(dataset):
            resumed = _prepare_run(samples, plan.config, resume=resume, overwrite=overwrite)
        todo = _todo(samples, plan.config)
        skipped = samples.count() - todo.count()
    counts = {"saved": 0}
    with database_errors(samples, f"scoring into {score_field!r}", done=lambda: counts["saved"]):
        scored, failed = score_pending(todo, model, plan, progress=progress, counts=counts, label=label)
        with dataset_lock(dataset):
            save_results(samples, plan.config, skipped=skipped)
    return ScoreSummary(score_field, scored, failed, skipped, resumed)
