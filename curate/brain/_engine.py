"""The run engine behind every ``compute_*`` of :mod:`curate.brain`: any registered score
kind, scored into a FiftyOne collection as a brain run.

Stages: :func:`plan_run` checks settings, model and collection and runs the model on one
blank image, before anything is written; :func:`prepare_run` registers the run (or
recognises an earlier one with the same settings) under the dataset lock;
:func:`score_pending` scores what is left, batch by batch, writing after every batch;
:func:`save_results` stores the counts. :func:`execute_plan` does the last three.

Resuming: a score depends only on the image, the settings and the seed, so an
interrupted run is finished by calling again with the same settings: samples that
already hold a score or an error for this run are skipped. A score field that holds a
*different* run's results (other model or settings) is an error unless ``overwrite``.

Database lost: the scores written so far stay; the run stops with a
:class:`DatabaseUnavailableError` that says to rerun the same command.

Concurrency: the dataset's run records and field schema change only under
:func:`curate.brain._lock.dataset_lock`, so runs with different fields (or several
processes, :mod:`curate.brain.distributed`) can share one dataset.

Failures: an image that cannot be read, does not fit the size/channel policy, or whose
score is not finite gets no score and a message in ``<field>_error``; every other image
is scored.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from curate.brain import runs


@dataclass
class ScoreSummary:
    """What one call did: ``scored`` + ``failed`` new samples, ``skipped`` already done."""

    brain_key: str
    scored: int
    failed: int
    skipped: int
    resumed: bool


class DatabaseUnavailableError(RuntimeError):
    """The database went away during a run; what was saved stays, rerun to resume."""


@dataclass
class Plan:
    """Everything a run needs, checked before the database is touched."""

    config: runs.ScoreRunConfig
    policy: object  # curate.data.loader.ImagePolicy
    batch_size: int
    num_workers: int
    scorer: object  # images (B, C, H, W) -> curate.scores.Scored
    extra_fields: dict = field(default_factory=dict)


def _describe(model) -> str:
    text = repr(model)
    return text if len(text) <= 500 else text[:497] + "..."


def check_collection(samples, model, *, batch_size, size, channels, resize):
    """The image policy of a non-empty collection whose images fit ``model`` (ValueError if not)."""
    from curate.data.loader import resolve_policy
    from curate.models.base import check_images_fit

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if samples.count() == 0:
        raise ValueError("the collection to score is empty (0 samples); nothing to do "
                         "(check --tags / --saved-view)")
    policy = resolve_policy(samples, size=size, channels=channels, resize=resize)
    check_images_fit(model, (policy.channels, *policy.size), "this collection's images")
    return policy


def plan_run(samples, model, *, score: str | None, score_field: str | None = None, extra_fields: dict | None = None,
             seed: int = 0, batch_size: int = 64, device=None, size=None, channels=None, resize: bool = False,
             num_workers: int = 2, model_description: str | None = None, **settings) -> Plan:
    """Check the kind, its ``settings``, the fields, the model and the collection; run the
    model on one blank image. Writes nothing; raises ValueError."""
    from curate import scores
    from curate.brain._names import check_field_name
    from curate.models.base import check_model

    kind = scores.get(scores.resolve_kind(score))
    check_model(model)
    params = kind.resolve(settings)
    score_field = kind.field if score_field is None else score_field
    check_field_name(score_field, "score_field")
    error_field = f"{score_field}_error"
    extra_fields = {k: v for k, v in (extra_fields or {}).items() if v is not None}
    for name, f in extra_fields.items():
        if name not in kind.extras:
            raise ValueError(f"score {kind.name!r} has no output {name!r} to store "
                             f"(it has {list(kind.extras) or 'none'})")
        check_field_name(f, f"the {name} field")
        if f in (score_field, error_field):
            raise ValueError(f"the {name} field {f!r} collides with the score/error fields")
    policy = check_collection(samples, model, batch_size=batch_size, size=size, channels=channels,
                              resize=resize)

    def scorer(images):
        return kind.scorer(model, images, seed=int(seed), device=device, progress=False, **params)

    # The model on one blank image, before the database is touched: a bad setting or a
    # network that cannot take these images fails here and loses nothing.
    probe = torch.zeros((1, policy.channels, *policy.size))
    try:
        res = scorer(probe)
    except (ValueError, TypeError):
        raise
    except Exception as e:
        raise ValueError(f"the model failed on a blank {tuple(probe.shape[1:])} image before any "
                         f"scoring: {type(e).__name__}: {e}") from e
    if res.errors:
        raise ValueError(f"the model gives NaN/Inf on a blank image ({res.errors[0]}); refusing to score with it")
    missing = [n for n in extra_fields if n not in res.extra]
    if missing:
        raise ValueError(f"score {kind.name!r} with these settings does not compute {missing} "
                         "(a divergence setting is needed for generation_logp)")
    config = runs.ScoreRunConfig(
        score_field, score=kind.name, error_field=error_field, extra_fields=extra_fields, seed=int(seed),
        model=type(model).__module__ + "." + type(model).__qualname__,
        model_description=model_description or _describe(model),
        model_fingerprint=runs.model_fingerprint(model), image_size=list(policy.size),
        image_channels=policy.channels, resize=bool(policy.resize), versions=runs.versions(),
        **{p.stored_as: params[p.name] for p in kind.params},
    )
    return Plan(config, policy, int(batch_size), num_workers, scorer, extra_fields)


def _has_values(dataset, f: str) -> bool:
    return f in dataset.get_field_schema() and dataset.exists(f).count() > 0


def _run_fields(dataset, key) -> list[str]:
    cfg = dataset.get_brain_info(key).config
    return cfg.fields() if isinstance(cfg, runs.ScoreRunConfig) else [key]


def _refusal(old, config, resume: bool) -> str:
    if type(old) is not type(config):
        return f"another brain run ({type(old).__name__})"
    if old.identity() == config.identity():
        return "an earlier run with the same settings (resume=False was given)"
    if old.score != config.score:
        return f"another brain run (of the score {old.score!r})"
    new = config.identity()
    diff = {k: (v, new.get(k)) for k, v in old.identity().items() if v != new.get(k)}
    return f"a run with other settings (stored vs new: {diff})"


def prepare_run(samples, config, *, resume: bool, overwrite: bool) -> bool:
    """Register the run and declare its fields (call under :func:`dataset_lock`).

    Returns True when an earlier run of the same settings resumes."""
    import fiftyone.core.fields as fof

    dataset = samples._dataset
    key = config.score_field
    resumed = False
    if key in dataset.list_brain_runs():
        old = dataset.get_brain_info(key).config
        same = type(old) is type(config) and old.score == config.score and old.identity() == config.identity()
        if same and resume:
            # Same settings: keep the stored values, refresh the run's config/view.
            config.build().register_run(samples, key, overwrite=True, cleanup=False)
            resumed = True
        elif not overwrite:
            raise ValueError(f"field {key!r} already holds the results of {_refusal(old, config, resume)}; "
                             "pass overwrite=True to replace them, or choose another score_field")
        else:
            dataset.delete_brain_run(key)  # removes the old run's fields too
    if not resumed:
        # A field of another run (its error or extra field) or of the user: refuse.
        owners = {f: k for k in dataset.list_brain_runs() for f in _run_fields(dataset, k)}
        for f in config.fields():
            if f in owners:
                raise ValueError(f"field {f!r} belongs to the brain run {owners[f]!r}; choose "
                                 "another score_field (or delete that run)")
            if _has_values(dataset, f) and not overwrite:
                raise ValueError(f"field {f!r} already holds values that no curate scoring run wrote; pass "
                                 "overwrite=True to replace them, or choose another score_field")
        for f in config.fields():
            if f in dataset.get_field_schema():
                dataset.delete_sample_field(f)
        config.build().register_run(samples, key, overwrite=True, cleanup=False)
    schema = dataset.get_field_schema()
    for f in config.fields():
        if f not in schema:
            dataset.add_sample_field(f, fof.StringField if f == config.error_field else fof.FloatField)
    return resumed


def todo(samples, config):
    """The samples of ``samples`` with neither a score nor an error of this run."""
    return samples.exists(config.score_field, False).exists(config.error_field, False)


def score_pending(pending, plan: Plan, *, progress=True, label=None, counts=None) -> tuple[int, int]:
    """Score the samples of ``pending`` (declared fields, registered run); returns
    (scored, failed). Writes after every batch, scores before errors; ``counts``
    (a dict) is kept up to date with the samples saved so far."""
    from curate import _progress
    from curate.data.loader import iter_batches

    c, p = plan.config, plan.policy
    dataset = pending._dataset
    scored = failed = 0
    with _progress.progress(pending.count(), label or f"{c.score} -> {c.score_field}", progress) as advance:
        for batch in iter_batches(pending, batch_size=plan.batch_size, size=p.size, channels=p.channels,
                                  resize=p.resize, num_workers=plan.num_workers):
            errors = dict(batch.failed)
            values, extras = {}, {name: {} for name in plan.extra_fields}
            if batch.ids:
                res = plan.scorer(batch.images)
                for i, sid in enumerate(batch.ids):
                    if i in res.errors:
                        errors[sid] = res.errors[i]
                        continue
                    values[sid] = float(res.values[i])
                    for name in plan.extra_fields:
                        extras[name][sid] = float(res.extra[name][i])
            # Scores first, then errors: a kill in between only re-tries the failures.
            if values:
                for name, f in plan.extra_fields.items():
                    dataset.set_values(f, extras[name], key_field="id")
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
    results = runs.ScoreResults(samples, config, config.score_field,
                                scored=samples.exists(config.score_field).count(),
                                failed=samples.exists(config.error_field).count(), skipped=skipped)
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


def execute_plan(samples, plan: Plan, *, progress, resume: bool, overwrite: bool,
                 label: str | None = None) -> ScoreSummary:
    """Register (or resume) the run of a checked ``plan``, score what is left, store the counts."""
    from curate.brain._lock import dataset_lock

    score_field = plan.config.score_field
    dataset = samples._dataset
    with database_errors(samples, f"preparing the run {score_field!r}"):
        with dataset_lock(dataset):
            resumed = prepare_run(samples, plan.config, resume=resume, overwrite=overwrite)
        pending = todo(samples, plan.config)
        skipped = samples.count() - pending.count()
    counts = {"saved": 0}
    with database_errors(samples, f"scoring into {score_field!r}", done=lambda: counts["saved"]):
        scored, failed = score_pending(pending, plan, progress=progress, counts=counts, label=label)
        with dataset_lock(dataset):
            save_results(samples, plan.config, skipped=skipped)
    return ScoreSummary(score_field, scored, failed, skipped, resumed)
