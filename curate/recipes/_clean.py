"""The clean-and-retrain loop shared by ``clean_digits`` and ``clean_cifar``: what does a
risk score add beyond de-duplication?

Four arms (:data:`_clean_common.ARMS`), each trained once per training seed in ``seeds``:

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
4. ``clean``: the tags that define the arms (:mod:`_clean_arms`; only the scores and the
   dedupe decide what goes, never ``planted_group``), :func:`export_clean` of
   ``dedupe_score`` to ``export/`` and its re-import (that arm trains on the export);
5. per training seed: ``train_<arm>_s<seed>`` (one budget for all) and
   ``sample_<arm>_s<seed>`` (every arm of a seed from the same noise);
6. ``memorization``: every model's samples against the original training set (Carlini,
   Gu), with bootstrap intervals (:mod:`_clean_measure`, :mod:`_clean_bootstrap`);
7. ``analysis`` (when ``analysis.methods`` is set): other scores of the scoring baseline;
8. report: a table, ``figures/``, ``results.json`` and ``report.md``.

The data, the score and the removals use ``seed`` (one cleaning); ``seeds`` are the
training seeds.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from curate.recipes import _config
from curate.recipes._clean_arms import arm_view, tag_arms
from curate.recipes._clean_common import ARM_LABEL, CRITERIA  # noqa: F401 (re-exported for callers)
from curate.recipes._clean_common import (ARM_EXCLUDE, ARMS, EXPORTED_ARM, check_dedupe, check_seeds,
                                          fill_score_settings, run_key, sampling_seed, score_kind_settings)
from curate.recipes._clean_data import dataset_name, plant_duplicates, view_images

#: FiftyOne stages that live in the database (rerun if the dataset has vanished).
DB_STAGES = ("dataset", "score", "clean")


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------- command line ---

def start(recipe: str, description: str, default_preset: str, argv=None, *,
          extra_args: Callable | None = None, extra_overrides: Callable | None = None):
    """Like :func:`_config.start`, with recipe-specific flags.

    ``extra_args(parser)`` adds flags; ``extra_overrides(args)`` turns them into
    ``key=value`` overrides applied after ``--set``. Returns ``(cfg, run, args)`` or
    None after ``--dry-run``.
    """
    parser = _config.recipe_parser(recipe, description, default_preset)
    if extra_args is not None:
        extra_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = _config.resolve(recipe, args, fill=fill_score_settings)
        if extra_overrides is not None:
            cfg = _config.apply_overrides(cfg, extra_overrides(args))
        check_config(cfg)
    except _config.ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.dry_run:
        print(f"# resolved config of {recipe} (preset {args.config})")
        print(_config.to_toml(cfg), end="")
        return None
    out = Path(args.out) if args.out else _config.default_out(recipe, args.config)
    try:
        run = _config.RunDir(out, cfg, fresh=args.fresh)
    except _config.ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    return cfg, run, args


def check_config(cfg: dict) -> None:
    """Refuse settings the loop cannot use, before anything runs (ConfigError)."""
    d, c, s, m = cfg["data"], cfg["clean"], cfg["score"], cfg["memorization"]
    if d["n_planted"] < 0 or (d["n_planted"] > 0 and d["copies"] < 2):
        raise _config.ConfigError("data.n_planted must be >= 0 and data.copies >= 2 when planting")
    check_seeds(cfg.get("seeds"))
    if "remove" in c:
        raise _config.ConfigError("clean.remove is gone: every run now trains the four arms "
                                  f"{', '.join(ARMS)}; delete the key")
    if isinstance(c["top_k"], bool) or not isinstance(c["top_k"], int) or c["top_k"] < 1:
        raise _config.ConfigError(f"clean.top_k (the k unique images removed) must be an int >= 1, got {c['top_k']!r}")
    check_dedupe(cfg)
    score_kind_settings(s)
    if m["samples"] < 2:
        raise _config.ConfigError("memorization.samples must be >= 2")
    if m.get("bootstrap", 0) < 100:
        raise _config.ConfigError("memorization.bootstrap (resamples of the interval) must be >= 100")


# ------------------------------------------------------------------ helpers ---

def timed(fn: Callable[[], dict], name: str = "") -> Callable[[], dict]:
    """Wrap a stage so its result records (and the log shows) wall and CPU seconds."""
    def run():
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn() or {}
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        log(f"[stage {name}] finished in {out['seconds']:.1f} s (CPU {out['cpu_seconds']:.1f} s)")
        return out
    return run


def device_of(cfg: dict) -> torch.device:
    want = cfg.get("device", "auto")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


# ------------------------------------------------------------------- stages ---

class Loop:
    """One run of the clean-and-retrain loop; ``build(dataset_name, run)`` makes the
    FiftyOne dataset of training samples (tag ``train``) and returns a JSON dict."""

    def __init__(self, recipe: str, cfg: dict, run, args, build: Callable):
        self.recipe, self.cfg, self.run, self.args, self.build = recipe, cfg, run, args, build
        self.name = dataset_name(cfg, run)
        self.dev = device_of(cfg)
        self.seed = int(cfg["seed"])
        self.seeds = check_seeds(cfg["seeds"])
        #: the baseline of the first training seed computes the score
        self.score_seed = self.seeds[0]
        self.results: dict = {}

    # --- database-backed state
    def _fo(self):
        import fiftyone as fo

        return fo

    def dataset(self):
        return self._fo().load_dataset(self.name)

    def train_view(self):
        return self.dataset().match_tags("train")

    def exported_name(self) -> str:
        return self.name + "-cleaned"

    def _reset(self, fresh: bool) -> None:
        """``--fresh`` or a vanished dataset (or re-imported export): drop the database
        stages (and with ``--fresh`` every artefact), so they are rebuilt."""
        fo = self._fo()
        lost = (any(self.run.done(s) for s in DB_STAGES) and not fo.dataset_exists(self.name)) or (
            self.run.done("clean") and not fo.dataset_exists(self.exported_name()))
        if fresh or lost:
            if lost:
                log(f"  the FiftyOne dataset {self.name!r} (or its export) is gone; rebuilding it and its stages")
            for s in DB_STAGES:
                (self.run.path / f"{s}.done.json").unlink(missing_ok=True)
            for n in (self.name, self.exported_name()):
                if fo.dataset_exists(n):
                    fo.delete_dataset(n)
        if fresh:
            for sub in ("models", "export", "images", "figures", "samples", "memorization"):
                shutil.rmtree(self.run.path / sub, ignore_errors=True)

    def stage_dataset(self) -> dict:
        fo = self._fo()
        for n in (self.name, self.exported_name()):
            if fo.dataset_exists(n):
                fo.delete_dataset(n)
        info = self.build(self.name, self.run)
        ds = self.dataset()
        d = self.cfg["data"]
        planted = plant_duplicates(ds, ds.match_tags("train"), n_planted=int(d["n_planted"]),
                                   copies=int(d["copies"]), seed=self.seed, folder=self.run.path / "images" / "planted")
        info.update(planted)
        info["n_train"] = ds.match_tags("train").count()
        info["dataset_name"] = self.name
        return info

    # --- models
    def training_view(self, arm: str):
        """What ``arm`` trains on: a view of the training samples, or for the exported arm
        the export re-imported (so the export is what trains)."""
        if arm == EXPORTED_ARM:
            return self._fo().load_dataset(self.exported_name())
        return arm_view(self.train_view(), arm)

    def _train(self, arm: str, seed: int) -> dict:
        from curate.training import train

        m = self.cfg["model"]
        ids, images = view_images(self.training_view(arm))
        kwargs = {k: v for k, v in m.items() if k not in ("preset",)}
        train(images, self.run.path / "models" / run_key(arm, seed), preset=m["preset"], seed=seed,
              device=self.dev, **kwargs)
        return {"arm": arm, "seed": seed, "n_images": len(ids), "steps": int(m["steps"]),
                "batch_size": int(m["batch_size"])}

    def model(self, arm: str, seed: int):
        from curate.models.checkpoint import load_model

        return load_model(self.run.path / "models" / run_key(arm, seed), device=self.dev)

    # --- scoring and cleaning
    def score_field(self) -> str:
        return score_kind_settings(self.cfg["score"])[0].field

    def stage_score(self) -> dict:
        from curate.brain import compute_score

        s = self.cfg["score"]
        kind, params = score_kind_settings(s)
        summ = compute_score(self.train_view(), self.model("baseline", self.score_seed), kind.name,
                             score_field=self.score_field(), batch_size=int(s["batch_size"]), seed=self.seed,
                             device=self.dev, num_workers=2, overwrite=True, **params)
        return {"scored": summ.scored, "failed": summ.failed, "skipped": summ.skipped,
                "field": self.score_field(), "score": s["use"], "model": run_key("baseline", self.score_seed)}

    def stage_clean(self) -> dict:
        """Tag every arm's removals, export the recommended arm and re-import the export.

        Uses nothing but the score field and the dedupe."""
        import fiftyone.types as fot

        from curate.brain import export_clean

        train = self.train_view()
        out = tag_arms(train, self.cfg, self.score_field(), self.seed)
        export_dir = self.run.path / "export"
        excl = ARM_EXCLUDE[EXPORTED_ARM]
        n_export = export_clean(train, export_dir, exclude_tags=excl, overwrite=True, progress=False)
        fo = self._fo()
        if fo.dataset_exists(self.exported_name()):
            fo.delete_dataset(self.exported_name())
        cleaned = fo.Dataset.from_dir(dataset_dir=str(export_dir), dataset_type=fot.ImageClassificationDirectoryTree,
                                      name=self.exported_name(), persistent=True, progress=False)
        if cleaned.count() != n_export or n_export != out["n_kept"][EXPORTED_ARM]:
            raise RuntimeError(f"the export holds {cleaned.count()} images but {n_export} were exported "
                               f"and the arm keeps {out['n_kept'][EXPORTED_ARM]}")
        out.update({"exported_arm": EXPORTED_ARM, "exclude_tags": excl, "n_exported": n_export,
                    "exported_dataset": cleaned.name})
        return out

    # --- samples and memorization
    def stage_sample(self, arm: str, seed: int) -> dict:
        from curate import plots
        from curate.sampling import sample

        mc = self.cfg["memorization"]
        key = run_key(arm, seed)
        x = sample(self.model(arm, seed), int(mc["samples"]), method=mc["method"], steps=int(mc["steps"]),
                   seed=sampling_seed(seed), progress=True)
        (self.run.path / "samples").mkdir(exist_ok=True)
        _config.save_tensors(self.samples_path(arm, seed), samples=x)
        zoom = 4 if x.shape[-1] <= 16 else 2
        plots.image_grid(x[:64], self.run.path / "figures" / f"samples_{key}.png", ncol=16, zoom=zoom)
        return {"n_samples": x.shape[0], "sampling_seed": sampling_seed(seed)}

    def samples_path(self, arm: str, seed: int) -> Path:
        return self.run.path / "samples" / f"{run_key(arm, seed)}.safetensors"

    def memorization_path(self, arm: str, seed: int) -> Path:
        """Where :meth:`Memorization.save` writes one model's result (``.safetensors`` + ``.json``)."""
        return self.run.path / "memorization" / run_key(arm, seed)

    def reference(self) -> tuple[list[str], torch.Tensor]:
        """The original training set (ids, images): what memorization is measured against."""
        return view_images(self.train_view())

    # --- the whole loop
    def stage_names(self) -> list[str]:
        """Every stage in the order it runs (analysis only when configured)."""
        names = ["dataset", f"train_{run_key('baseline', self.score_seed)}", "score", "clean"]
        for seed in self.seeds:
            names += [f"train_{run_key(a, seed)}" for a in ARMS if (a, seed) != ("baseline", self.score_seed)]
            names += [f"sample_{run_key(a, seed)}" for a in ARMS]
        names.append("memorization")
        if self.cfg.get("analysis", {}).get("methods"):
            names.append("analysis")
        return names

    def run_all(self) -> dict:
        from curate.recipes import _clean_measure

        t_all = time.perf_counter()
        if self.cfg.get("threads", 0):
            torch.set_num_threads(int(self.cfg["threads"]))
        self._reset(bool(getattr(self.args, "fresh", False)))

        def st(name, fn):
            return self.run.stage(name, timed(fn, name))

        data = st("dataset", self.stage_dataset)
        log(f"  dataset {self.name!r}: {data['n_train']} training samples "
            f"({data.get('n_planted', 0)} images planted {data.get('copies', 0)} times each)")
        st(f"train_{run_key('baseline', self.score_seed)}", lambda: self._train("baseline", self.score_seed))
        sc = st("score", self.stage_score)
        log(f"  scored {sc['scored']} samples into {sc['field']!r} ({sc['failed']} failed)")
        cl = st("clean", self.stage_clean)
        log(f"  dedupe: {cl['n_groups']} groups, {cl['n_duplicates_tagged']} extra copies; then top-{cl['top_k']} "
            f"unique by score ({cl['n_score_removed']}) and {cl['n_random_removed']} at random; exported "
            f"{cl['n_exported']} ({EXPORTED_ARM}) to {self.run.path / 'export'}")
        for seed in self.seeds:
            for arm in ARMS:
                if (arm, seed) != ("baseline", self.score_seed):  # trained before the score
                    st(f"train_{run_key(arm, seed)}", lambda arm=arm, seed=seed: self._train(arm, seed))
            for arm in ARMS:
                st(f"sample_{run_key(arm, seed)}", lambda arm=arm, seed=seed: self.stage_sample(arm, seed))
        st("memorization", lambda: _clean_measure.stage_memorization(self))
        if "analysis" in self.stage_names():
            self.results["analysis"] = st("analysis", lambda: _clean_measure.stage_analysis(self))
        from curate.recipes._clean_report import write_report

        return write_report(self, wall_seconds=time.perf_counter() - t_all)


def main(recipe: str, description: str, default_preset: str, argv, build, **start_kwargs) -> dict | None:
    """A clean recipe's entry point: parse, then run every stage with ``build(name, run, cfg)``
    making the FiftyOne dataset. Returns None for ``--dry-run``."""
    started = start(recipe, description, default_preset, argv, **start_kwargs)
    if started is None:
        return None
    cfg, run, args = started
    return Loop(recipe, cfg, run, args, lambda name, run: build(name, run, cfg)).run_all()
