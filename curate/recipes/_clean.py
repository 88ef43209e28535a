"""The clean-and-retrain loop shared by ``clean_digits`` and ``clean_cifar``.

Stages (each resumable; every artefact in the run folder):

1. ``dataset``: the FiftyOne dataset of the training images, with ``n_planted``
   images copied ``copies`` times each (separate files, as duplicates occur in
   scraped data; ``planted_group`` records them for the report only);
2. ``train_baseline``: a U-Net trained on every training sample;
3. ``score``: :func:`curate.brain.compute_score` of ``score.use`` (any registered kind) on every training sample;
4. ``clean``: :func:`flag_high_risk` (top-k) and :func:`dedupe` of the flagged images
   against the whole set, then :func:`export_clean` to ``export/``; only the scores and
   the dedupe decide what goes -- never ``planted_group``;
5. ``control``: the same *number* of training samples removed at random (seeded),
   tagged ``control_removed``;
6. ``train_cleaned`` (on the export, re-imported) and ``train_control``, with the
   baseline's budget (steps, batch, seed);
7. ``sample_<arm>``: samples from each of the three models (same seed);
8. ``memorization``: each arm's samples against the original training set,
   memorized by Carlini's and by Gu's criterion;
9. report: a table, ``figures/``, ``results.json`` and ``report.md``.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from curate.recipes import _config
from curate.recipes._clean_common import (ARM_LABEL, ARMS, CRITERIA, CRITERION_TEXT,  # noqa: F401 (re-exported)
                                          fill_score_settings, random_flag_hit_probability,
                                          score_kind_settings, score_settings)

#: FiftyOne stages that live in the database (rerun if the dataset has vanished).
DB_STAGES = ("dataset", "score", "clean", "control")


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
    if c["top_k"] < 1:
        raise _config.ConfigError("clean.top_k must be >= 1")
    if c["remove"] not in ("duplicates", "flagged"):
        raise _config.ConfigError("clean.remove must be 'duplicates' (the extra copies dedupe finds) "
                                  "or 'flagged' (those and every flagged image)")
    score_kind_settings(s)
    if m["samples"] < 2:
        raise _config.ConfigError("memorization.samples must be >= 2")


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


def dataset_name(cfg: dict, run) -> str:
    """The FiftyOne dataset of this run: ``cfg['dataset_name']`` or one derived from the run folder."""
    if cfg.get("dataset_name"):
        return cfg["dataset_name"]
    h = hashlib.sha256(str(run.path.resolve()).encode()).hexdigest()[:10]
    return f"{run.path.name}-{h}"


def view_images(view) -> tuple[list[str], torch.Tensor]:
    """Every image of a FiftyOne view: ids (n,) and images (n, C, H, W) float32 in [-1, 1]."""
    from curate.data.loader import load_images

    ids, images, failed = load_images(view, batch_size=512, num_workers=2)
    if failed:
        sid, why = next(iter(failed.items()))
        raise RuntimeError(f"{len(failed)} training image(s) could not be read, e.g. {sid}: {why}")
    return ids, images


def plant_duplicates(dataset, train, *, n_planted: int, copies: int, seed: int, folder: Path) -> dict:
    """Copy ``n_planted`` training images (chosen at random, seeded) ``copies - 1`` more
    times as new files and samples. Every member of a group (original and copies) gets
    ``planted_group`` = the group number; other samples have None."""
    import fiftyone as fo
    import fiftyone.core.fields as fof

    dataset.add_sample_field("planted_group", fof.IntField)
    if n_planted == 0:
        return {"n_planted": 0, "copies": 0, "n_copies_added": 0}
    ids, paths, labels = train.values(["id", "filepath", "ground_truth.label"])
    if n_planted > len(ids):
        raise ValueError(f"data.n_planted = {n_planted} but only {len(ids)} training images")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(ids), generator=g)[:n_planted].tolist()
    folder.mkdir(parents=True, exist_ok=True)
    new = []
    for group, i in enumerate(pick):
        src = Path(paths[i])
        for c in range(1, copies):
            dst = folder / f"planted{group:03d}_copy{c:03d}{src.suffix}"
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            new.append(fo.Sample(filepath=str(dst.resolve()), tags=["train"], planted_group=group,
                                 ground_truth=fo.Classification(label=labels[i])))
    dataset.add_samples(new, progress=False)
    dataset.set_values("planted_group", {ids[i]: group for group, i in enumerate(pick)}, key_field="id")
    return {"n_planted": n_planted, "copies": copies, "n_copies_added": len(new),
            "planted_sources": [paths[i] for i in pick]}


# ------------------------------------------------------------------- stages ---

class Loop:
    """One run of the clean-and-retrain loop; ``build(dataset_name, run)`` makes the
    FiftyOne dataset of training samples (tag ``train``) and returns a JSON dict."""

    def __init__(self, recipe: str, cfg: dict, run, args, build: Callable):
        self.recipe, self.cfg, self.run, self.args, self.build = recipe, cfg, run, args, build
        self.name = dataset_name(cfg, run)
        self.dev = device_of(cfg)
        self.seed = int(cfg["seed"])
        self.results: dict = {}

    # --- database-backed state
    def _fo(self):
        import fiftyone as fo

        return fo

    def dataset(self):
        return self._fo().load_dataset(self.name)

    def train_view(self):
        return self.dataset().match_tags("train")

    def _reset(self, fresh: bool) -> None:
        """``--fresh`` or a vanished dataset: drop the database stages (and with
        ``--fresh`` every artefact), so they are rebuilt."""
        fo = self._fo()
        lost = any(self.run.done(s) for s in DB_STAGES) and not fo.dataset_exists(self.name)
        if fresh or lost:
            if lost:
                log(f"  the FiftyOne dataset {self.name!r} is gone; rebuilding it and its stages")
            for s in DB_STAGES:
                (self.run.path / f"{s}.done.json").unlink(missing_ok=True)
            for n in (self.name, self.name + "-cleaned"):
                if fo.dataset_exists(n):
                    fo.delete_dataset(n)
        if fresh:
            for sub in ("models", "export", "images", "figures"):
                shutil.rmtree(self.run.path / sub, ignore_errors=True)

    def stage_dataset(self) -> dict:
        fo = self._fo()
        for n in (self.name, self.name + "-cleaned"):
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
    def _train(self, arm: str, view) -> dict:
        from curate.training import train

        m = self.cfg["model"]
        ids, images = view_images(view)
        kwargs = {k: v for k, v in m.items() if k not in ("preset",)}
        train(images, self.run.path / "models" / arm, preset=m["preset"], seed=self.seed,
              device=self.dev, **kwargs)
        return {"n_images": len(ids), "steps": int(m["steps"]), "batch_size": int(m["batch_size"])}

    def model(self, arm: str):
        from curate.models.checkpoint import load_model

        return load_model(self.run.path / "models" / arm, device=self.dev)

    # --- scoring and cleaning
    def stage_score(self) -> dict:
        from curate.brain import compute_score

        s = self.cfg["score"]
        kind, params = score_kind_settings(s)
        summ = compute_score(self.train_view(), self.model("baseline"), kind.name, score_field=self.score_field(),
                             batch_size=int(s["batch_size"]), seed=self.seed, device=self.dev, num_workers=2,
                             overwrite=True, **params)
        return {"scored": summ.scored, "failed": summ.failed, "skipped": summ.skipped,
                "field": self.score_field(), "score": s["use"]}

    def score_field(self) -> str:
        return score_kind_settings(self.cfg["score"])[0].field

    def stage_clean(self) -> dict:
        """Flag the top-k scores, dedupe them against everything, export the rest.

        Uses nothing but the score field and pixel distances."""
        from curate.brain import dedupe, export_clean, flag_high_risk

        c = self.cfg["clean"]
        train = self.train_view()
        field = self.score_field()
        flagged = flag_high_risk(train, field, top_k=int(c["top_k"]), tag="high_risk")
        groups = dedupe(train, threshold=float(c["dedupe_threshold"]), query_tag="high_risk",
                        tag="duplicate", keep="lowest_score", score_field=field)
        exclude = ["duplicate"] if c["remove"] == "duplicates" else ["duplicate", "high_risk"]
        export_dir = self.run.path / "export"
        n_export = export_clean(train, export_dir, exclude_tags=exclude, overwrite=True, progress=False)
        n_train = train.count()
        removed = train.match_tags(exclude)
        # Re-import the export: the cleaned model trains on exactly what was written.
        import fiftyone.types as fot

        fo = self._fo()
        if fo.dataset_exists(self.name + "-cleaned"):
            fo.delete_dataset(self.name + "-cleaned")
        cleaned = fo.Dataset.from_dir(dataset_dir=str(export_dir), dataset_type=fot.ImageClassificationDirectoryTree,
                                      name=self.name + "-cleaned", persistent=True, progress=False)
        if cleaned.count() != n_export:
            raise RuntimeError(f"the export holds {cleaned.count()} images but {n_export} were exported")
        return {"n_train": n_train, "n_flagged": flagged.count(), "n_groups": len(groups),
                "n_duplicates_tagged": train.match_tags("duplicate").count(),
                "n_removed": removed.count(), "n_exported": n_export, "exclude_tags": exclude,
                "cleaned_dataset": cleaned.name}

    def stage_control(self, n_remove: int) -> dict:
        train = self.train_view()
        train.untag_samples("control_removed")
        ids = sorted(train.values("id"))  # a seeded choice independent of database order
        g = torch.Generator().manual_seed(self.seed + 7919)
        pick = [ids[i] for i in torch.randperm(len(ids), generator=g)[:n_remove].tolist()]
        self.dataset().select(pick).tag_samples("control_removed")
        return {"n_removed": len(pick), "n_kept": train.match_tags("control_removed", bool=False).count()}

    def control_view(self):
        return self.train_view().match_tags("control_removed", bool=False)

    def cleaned_view(self):
        return self._fo().load_dataset(self.name + "-cleaned")

    # --- samples and memorization
    def stage_sample(self, arm: str) -> dict:
        from curate import plots
        from curate.sampling import sample

        mc = self.cfg["memorization"]
        model = self.model(arm)
        x = sample(model, int(mc["samples"]), method=mc["method"], steps=int(mc["steps"]), seed=self.seed + 1,
                   progress=True)
        _config.save_tensors(self.run.path / f"samples_{arm}.safetensors", samples=x)
        zoom = 4 if x.shape[-1] <= 16 else 2
        plots.image_grid(x[:64], self.run.path / "figures" / f"samples_{arm}.png", ncol=16, zoom=zoom)
        return {"n_samples": x.shape[0]}

    def reference(self) -> tuple[list[str], torch.Tensor]:
        """The original training set (ids, images): what memorization is measured against."""
        return view_images(self.train_view())

    def stage_memorization(self) -> dict:
        from curate.memorization import find_memorized

        ids, ref = self.reference()
        ref_dev = ref.to(self.dev)
        group_of = dict(zip(*self.train_view().values(["id", "planted_group"])))
        planted = torch.tensor([group_of.get(i) is not None for i in ids])
        out = {}
        for arm in ARMS:
            x = _config.load_tensors(self.run.path / f"samples_{arm}.safetensors")["samples"].to(self.dev)
            if self.cfg["memorization"].get("include_flips", False):
                # A model trained with flips may reproduce a mirrored image.
                res = _best_of_flips(x, ref_dev)
            else:
                res = find_memorized(x, ref_dev, progress=True)
            res.save(self.run.path / f"memorization_{arm}")
            nn1 = res.nn_index[:, 0].cpu()
            row = {"n_samples": res.n_samples}
            for crit in CRITERIA:
                mem = (res.carlini if crit == "carlini" else res.gu).cpu()
                row[crit] = {
                    "memorized_samples": int(mem.sum()),
                    "memorized_samples_planted": int((mem & planted[nn1]).sum()),
                    "images_reproduced": int(res.group.cpu()[nn1[mem]].unique().numel()),
                }
            out[arm] = row
        return out

    def stage_analysis(self) -> dict:
        """Other scores of the baseline on the unique training images: AUROC for the
        planted images and for the images the baseline reproduces (Carlini)."""
        from curate.evaluate import auroc, run_methods
        from curate.memorization import Memorization, duplicate_groups

        ids, ref = self.reference()
        _, first = duplicate_groups(ref)
        first = first.sort().values
        group_of = dict(zip(*self.train_view().values(["id", "planted_group"])))
        planted = torch.tensor([group_of.get(ids[i]) is not None for i in first.tolist()])
        repro = Memorization.load(self.run.path / "memorization_baseline").counts("carlini")[first] > 0
        specs = self.cfg["analysis"]["methods"]
        res = run_methods(self.model("baseline"), ref[first].to(self.dev), specs, seed=self.seed, progress=True, log=log)
        rows = []
        for name, r in res.items():
            sc = r.scores
            row = {"name": name, "label": r.label, "settings": r.settings, "nfe": r.nfe, "seconds": r.seconds}
            if planted.any():
                row["auroc_planted"] = auroc(sc[planted], sc[~planted])
            if repro.any() and (~repro).any():
                row["auroc_reproduced"] = auroc(sc[repro], sc[~repro])
            rows.append(row)
            log(f"  {r.label:<28} AUROC planted {row.get('auroc_planted', float('nan')):.3f}  "
                f"reproduced {row.get('auroc_reproduced', float('nan')):.3f}")
        return {"methods": rows}

    # --- the whole loop
    def run_all(self) -> dict:
        t_all = time.perf_counter()
        if self.cfg.get("threads", 0):
            torch.set_num_threads(int(self.cfg["threads"]))
        self._reset(bool(getattr(self.args, "fresh", False)))
        def st(name, fn):
            return self.run.stage(name, timed(fn, name))

        data = st("dataset", self.stage_dataset)
        log(f"  dataset {self.name!r}: {data['n_train']} training samples "
            f"({data.get('n_planted', 0)} images planted {data.get('copies', 0)} times each)")
        st("train_baseline", lambda: self._train("baseline", self.train_view()))
        sc = st("score", self.stage_score)
        log(f"  scored {sc['scored']} samples into {sc['field']!r} ({sc['failed']} failed)")
        cl = st("clean", self.stage_clean)
        log(f"  flagged {cl['n_flagged']}, {cl['n_groups']} duplicate groups, removed {cl['n_removed']}, "
            f"exported {cl['n_exported']} to {self.run.path / 'export'}")
        st("control", lambda: self.stage_control(cl["n_removed"]))
        st("train_cleaned", lambda: self._train("cleaned", self.cleaned_view()))
        st("train_control", lambda: self._train("control", self.control_view()))
        for arm in ARMS:
            st(f"sample_{arm}", lambda arm=arm: self.stage_sample(arm))
        st("memorization", self.stage_memorization)
        if self.cfg.get("analysis", {}).get("methods"):
            self.results["analysis"] = st("analysis", self.stage_analysis)
        from curate.recipes._clean_report import write_report

        return write_report(self, wall_seconds=time.perf_counter() - t_all)


def _best_of_flips(x: torch.Tensor, ref: torch.Tensor):
    """Memorization against the reference and its mirror images (index mod n)."""
    from curate.memorization import Memorization, find_memorized

    n = ref.shape[0]
    res = find_memorized(x, torch.cat([ref, ref.flip(-1)]), progress=True)
    fold = lambda c: c[:n] + c[n:]  # noqa: E731 - a copy of the mirror counts for the image
    return Memorization(
        nn_dist=res.nn_dist, nn_index=res.nn_index % n, carlini_ratio=res.carlini_ratio, gu_ratio=res.gu_ratio,
        carlini=res.carlini, gu=res.gu, counts_carlini=fold(res.counts_carlini), counts_gu=fold(res.counts_gu),
        group=res.group[:n], settings=dict(res.settings, flips=True))


def main(recipe: str, description: str, default_preset: str, argv, build, **start_kwargs) -> dict | None:
    """A clean recipe's entry point: parse, then run every stage with ``build(name, run, cfg)``
    making the FiftyOne dataset. Returns None for ``--dry-run``."""
    started = start(recipe, description, default_preset, argv, **start_kwargs)
    if started is None:
        return None
    cfg, run, args = started
    return Loop(recipe, cfg, run, args, lambda name, run: build(name, run, cfg)).run_all()
