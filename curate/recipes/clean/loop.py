"""The clean-and-retrain loop shared by ``clean_digits`` and ``clean_cifar``: what does a
risk score add beyond de-duplication?

Four arms (:data:`.settings.ARMS`), each trained once per training seed in ``seeds``:

* ``baseline``: every training sample;
* ``dedupe``: the whole set de-duplicated (:func:`curate.brain.dedupe`, all pairs);
* ``dedupe_score``: the dedupe arm minus its ``clean.top_k`` highest-scored unique images;
* ``dedupe_random``: the dedupe arm minus ``clean.top_k`` unique images chosen at random.

Stages (each resumable; every artefact in the run folder):

1. ``dataset``: the FiftyOne dataset of the training images, with ``n_planted``
   images copied ``copies`` times each (separate files, as duplicates occur in
   scraped data; ``planted_group`` records them for the report only);
2. ``train_baseline_s<seeds[0]>``: the baseline of the first training seed, which scores;
3. ``score``: :func:`curate.brain.compute_score` of ``score.use`` on every training sample;
4. ``clean``: the tags that define the arms (:mod:`.arms`; only the scores and the
   dedupe decide what goes, never ``planted_group``), :func:`export_clean` of
   ``dedupe_score`` to ``export/`` and its re-import (that arm trains on the export);
5. per training seed: ``train_<arm>_s<seed>`` (one budget for all) and
   ``sample_<arm>_s<seed>`` (every arm of a seed from the same noise);
6. ``memorization``: every model's samples against the original training set (Carlini,
   Gu), with bootstrap intervals (:mod:`.measure`, :mod:`.bootstrap`);
7. ``analysis`` (when ``analysis.methods`` is set): other scores of the scoring baseline;
8. report: a table, ``figures/``, ``results.json`` and ``report.md``.

The data, the score and the removals use ``seed`` (one cleaning); ``seeds`` are the
training seeds. With ``workers`` > 1 the trainings and samplings of step 5 (and the
baselines of step 2) run in that many processes (:mod:`.workers`), to the same answer.

Each stage is a function of :mod:`.stages` or :mod:`.measure` that takes the run's
:class:`.layout.Layout` and config (plain data) and returns a JSON dict; this module only
decides their order and records their results in the run folder.
"""
from __future__ import annotations

import shutil
import time
from typing import Callable

from curate.recipes import _config
from curate.recipes._common import check_hardware, device_of, log, timed
from curate.recipes.clean import measure, stages
from curate.recipes.clean.data import dataset_name
from curate.recipes.clean.layout import Layout
from curate.recipes.clean.report import write_report
from curate.recipes.clean.settings import (ARMS, EXPORTED_ARM, check_dedupe, check_pool, check_seeds,
                                           fill_score_settings, run_key, score_kind_settings)

#: FiftyOne stages that live in the database (rerun if the dataset has vanished).
DB_STAGES = ("dataset", "score", "clean")


def _is_count(v) -> bool:
    """An int >= 1 (a TOML bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def check_config(cfg: dict) -> None:
    """Refuse settings the loop cannot use, before anything runs (ConfigError)."""
    d, c, s, m = cfg["data"], cfg["clean"], cfg["score"], cfg["memorization"]
    if d["n_planted"] < 0 or (d["n_planted"] > 0 and d["copies"] < 2):
        raise _config.ConfigError("data.n_planted must be >= 0 and data.copies >= 2 when planting")
    check_seeds(cfg.get("seeds"))
    if "remove" in c:
        raise _config.ConfigError("clean.remove is gone: every run now trains the four arms "
                                  f"{', '.join(ARMS)}; delete the key")
    if not _is_count(c["top_k"]):
        raise _config.ConfigError(f"clean.top_k (the k unique images removed) must be an int >= 1, got {c['top_k']!r}")
    check_dedupe(cfg)
    check_pool(cfg)
    score_kind_settings(s)
    if not _is_count(cfg.get("workers", 1)):
        raise _config.ConfigError("workers (processes that train and sample the models) must be an int >= 1, "
                                  f"got {cfg['workers']!r}")
    if m["samples"] < 2:
        raise _config.ConfigError("memorization.samples must be >= 2")
    if m.get("bootstrap", 0) < 100:
        raise _config.ConfigError("memorization.bootstrap (resamples of the interval) must be >= 100")


def layout_of(recipe: str, cfg: dict, run) -> Layout:
    return Layout(recipe=recipe, path=run.path, name=dataset_name(cfg, run.path), seed=int(cfg["seed"]),
                  seeds=tuple(check_seeds(cfg["seeds"])), device=str(device_of(cfg)))


def stage_names(lay: Layout, cfg: dict) -> list[str]:
    """Every stage in the order it runs (analysis only when configured)."""
    names = ["dataset", f"train_{run_key('baseline', lay.score_seed)}", "score", "clean"]
    for seed in lay.seeds:
        names += [f"train_{run_key(a, seed)}" for a in ARMS if (a, seed) != ("baseline", lay.score_seed)]
        names += [f"sample_{run_key(a, seed)}" for a in ARMS]
    names.append("memorization")
    if cfg.get("analysis", {}).get("methods"):
        names.append("analysis")
    return names


def reset(lay: Layout, run, fresh: bool) -> None:
    """``--fresh`` or a vanished dataset (or re-imported export): drop the database stages
    (and with ``--fresh`` every artefact), so they are rebuilt."""
    import fiftyone as fo

    lost = (any(run.done(s) for s in DB_STAGES) and not fo.dataset_exists(lay.name)) or (
        run.done("clean") and not fo.dataset_exists(lay.exported_name))
    if fresh or lost:
        if lost:
            log(f"  the FiftyOne dataset {lay.name!r} (or its export) is gone; rebuilding it and its stages")
        for s in DB_STAGES:
            (lay.path / f"{s}.done.json").unlink(missing_ok=True)
        for n in (lay.name, lay.exported_name):
            if fo.dataset_exists(n):
                fo.delete_dataset(n)
    if fresh:
        for sub in ("models", "export", "images", "figures", "samples", "memorization"):
            shutil.rmtree(lay.path / sub, ignore_errors=True)


def run_all(lay: Layout, cfg: dict, run, build: Callable[[str], dict], *, fresh: bool = False) -> dict:
    """Every stage in order, each resumed from its recorded result when it already ran;
    then the report. ``build(name)`` makes the FiftyOne dataset of training samples."""
    t_all = time.perf_counter()
    reset(lay, run, fresh)

    def st(name, fn):
        return run.stage(name, timed(fn, name))

    data = st("dataset", lambda: stages.dataset(lay, cfg, build))
    log(f"  dataset {lay.name!r}: {data['n_train']} training samples "
        f"({data.get('n_planted', 0)} images planted {data.get('copies', 0)} times each)")
    def score_and_clean():
        sc = st("score", lambda: stages.score(lay, cfg))
        log(f"  scored {sc['scored']} samples into {sc['field']!r} ({sc['failed']} failed)")
        cl = st("clean", lambda: stages.clean(lay, cfg))
        log(f"  dedupe: {cl['n_groups']} groups, {cl['n_duplicates_tagged']} extra copies; then top-{cl['top_k']} "
            f"unique by score ({cl['n_score_removed']}) and {cl['n_random_removed']} at random; exported "
            f"{cl['n_exported']} ({EXPORTED_ARM}) to {lay.path / 'export'}")

    if int(cfg.get("workers", 1)) > 1:
        _models_in_workers(lay, cfg, run, score_and_clean)
    else:
        st(f"train_{run_key('baseline', lay.score_seed)}", lambda: stages.train_arm(lay, cfg, "baseline", lay.score_seed))
        score_and_clean()
        for seed in lay.seeds:
            for arm in ARMS:
                if (arm, seed) != ("baseline", lay.score_seed):  # trained before the score
                    st(f"train_{run_key(arm, seed)}", lambda arm=arm, seed=seed: stages.train_arm(lay, cfg, arm, seed))
            for arm in ARMS:
                st(f"sample_{run_key(arm, seed)}", lambda arm=arm, seed=seed: stages.sample_arm(lay, cfg, arm, seed))
    st("memorization", lambda: measure.memorization(lay, cfg))
    results = {}
    names = stage_names(lay, cfg)
    if "analysis" in names:
        results["analysis"] = st("analysis", lambda: measure.analysis(lay, cfg))
    return write_report(lay, cfg, stage_names=names, results=results, wall_seconds=time.perf_counter() - t_all)


def _models_in_workers(lay: Layout, cfg: dict, run, score_and_clean: Callable[[], None]) -> None:
    """``workers`` > 1: the same trainings and samplings as one process, in ``workers``
    processes (:mod:`.workers`), never more jobs than workers at once. Every seed's baseline
    comes first (they need no score); the score and the cleaning run here once the scoring
    baseline is back; then every other arm, seed by seed. A trained model is sampled before
    the next training starts, so whole seeds finish in order. A job that fails stops new
    ones; the running ones are waited for and recorded, then the error is raised."""
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait

    from curate import _progress
    from curate.recipes.clean.workers import ModelWorkers

    n = int(cfg["workers"])
    todo: deque = deque()  # (kind, arm, seed) not yet submitted, in order
    jobs: dict = {}  # Future -> (kind, arm, seed)
    failed: list[BaseException] = []

    def name_of(kind: str, arm: str, seed: int) -> str:
        return f"{kind}_{run_key(arm, seed)}"

    with ModelWorkers(n, int(cfg.get("threads", 0)) or 1) as pool:
        def fill() -> None:
            while todo and len(jobs) < n and not failed:
                kind, arm, seed = todo.popleft()
                name = name_of(kind, arm, seed)
                if run.done(name):
                    run.stage(name, dict)  # logs that it is done
                    if kind == "train":
                        todo.appendleft(("sample", arm, seed))
                    continue
                log(f"[stage {name}] running in a worker")
                jobs[(pool.train if kind == "train" else pool.sample)(lay, cfg, arm, seed)] = (kind, arm, seed)

        def collect(until: Callable[[], bool], advance=lambda: None) -> None:
            fill()
            while jobs and (failed or not until()):
                finished, _ = wait(list(jobs), return_when=FIRST_COMPLETED)
                for f in finished:
                    kind, arm, seed = jobs.pop(f)
                    if f.exception() is not None:
                        log(f"[stage {name_of(kind, arm, seed)}] failed in its worker: {f.exception()!r}")
                        failed.append(f.exception())
                        continue
                    run.record(name_of(kind, arm, seed), f.result())
                    advance()
                    if kind == "train":
                        todo.appendleft(("sample", arm, seed))
                fill()
            if failed:
                raise failed[0]

        todo.extend(("train", "baseline", seed) for seed in lay.seeds)  # the scoring baseline first
        collect(lambda: run.done(name_of("train", "baseline", lay.score_seed)))
        score_and_clean()
        todo.extend(("train", arm, seed) for seed in lay.seeds for arm in ARMS if arm != "baseline")
        left = sum(not run.done(name_of(k, a, s)) for k in ("train", "sample") for a in ARMS for s in lay.seeds)
        with _progress.progress(left, "models trained and sampled in workers") as advance:
            collect(lambda: False, advance)


def main(recipe: str, description: str, default_preset: str, argv, build, *, extra_args: Callable | None = None,
         extra_overrides: Callable | None = None) -> dict | None:
    """A clean recipe's entry point: parse, then run every stage with ``build(name, run_path, cfg)``
    making the FiftyOne dataset. Returns None for ``--dry-run``."""
    started = _config.start(recipe, description, default_preset, argv, extra_args=extra_args,
                            extra_overrides=extra_overrides, fill=fill_score_settings, check=check_config)
    if started is None:
        return None
    cfg, run, args = started
    check_hardware(cfg, recipe=recipe, preset=args.config, trainings=len(ARMS) * len(cfg["seeds"]),
                   image_size=int(cfg["data"].get("image_size", 0) or 32), channels=int(cfg["data"].get("channels", 3)))
    lay = layout_of(recipe, cfg, run)
    with _config.torch_threads(int(cfg.get("threads", 0))):
        return run_all(lay, cfg, run, lambda name: build(name, run.path, cfg), fresh=bool(args.fresh))
