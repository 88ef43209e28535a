"""`curate score`: any registered risk score of a FiftyOne dataset, stored as a brain run.

The ``--score`` choices and the per-score options are generated from the score registry
(:mod:`curate.scores`): a kind registered before the parser is built appears here.
"""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args

#: Options of this command that are not settings of a score kind.
_OWN = {"dataset", "tags", "saved_view", "model", "exact_score", "train_tag", "score", "field", "seed",
        "batch_size", "size", "channels", "resize", "workers", "device", "overwrite", "no_resume",
        "no_progress", "shard_by_rank", "logp_field"}


def _setting_options(p, kinds) -> list[str]:
    """One option per setting name across the kinds; its default (None) means 'the kind's'."""
    seen: dict[str, list] = {}
    for k in kinds:
        for prm in k.params:
            seen.setdefault(prm.name, []).append((k, prm))
    for name, uses in seen.items():
        if name in _OWN:
            raise ValueError(f"score setting {name!r} clashes with an option of `curate score`")
        first = uses[0][1]
        choices = sorted({c for _, prm in uses for c in (prm.choices or ())}) or None
        defaults = "; ".join(f"{k.name}: {prm.default}" for k, prm in uses)
        kw = dict(type=first.type, choices=choices) if first.type is not bool else \
            dict(type=lambda s: s.lower() in ("1", "true", "yes"))
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar=name.upper(),
                       help=f"{first.help} (default: {defaults})", **kw)
    return list(seen)


def register(subparsers) -> None:
    from curate import scores
    from curate.scores import DEFAULT_KIND

    kinds = scores.kinds()
    p = subparsers.add_parser(
        "score",
        help="score each image of a FiftyOne dataset (higher = more at risk of being reproduced)",
        description=(
            "Runs curate.brain.compute_score: writes the chosen score to a float field batch by "
            "batch and registers a brain run (listed by dataset.list_brain_runs()). Interrupted runs "
            "resume when started again with the same settings. Choose the model with --model or "
            "--exact-score. Scores:\n" + "\n".join(f"  {k.name}: {k.summary}" for k in kinds)
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p)
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", default=None, help="checkpoint file (curate.load_model)")
    m.add_argument("--exact-score", action="store_true",
                   help="use the exact score of the dataset's samples tagged --train-tag")
    p.add_argument("--train-tag", default="train", help="tag of the training split for --exact-score "
                   "(default: train)")
    p.add_argument("--score", default=DEFAULT_KIND, choices=[k.name for k in kinds],
                   help=f"the score kind (default: {DEFAULT_KIND}; log_growth is the paper's Algorithm 1)")
    p.add_argument("--field", default=None, help="score field, also the brain key (default: the kind's: "
                   + ", ".join(f"{k.name} -> {k.field}" for k in kinds) + ")")
    p.add_argument("--logp-field", default=None,
                   help="also store the generation log-probability here (volume-growth scores)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per database write (default: 64)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image size (default: the first image's)")
    p.add_argument("--channels", type=int, choices=[1, 3], default=None, help="(default: the first image's)")
    p.add_argument("--resize", action="store_true", help="resize images of another size")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads (default: 2)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the model's)")
    p.add_argument("--overwrite", action="store_true", help="replace another run's scores")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an earlier run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shard-by-rank", action="store_true",
                   help="under torchrun: score only this process's shard (RANK of WORLD_SIZE); "
                        "see curate.brain.distributed")
    g = p.add_argument_group("score settings (each applies to the scores that list it)")
    p.set_defaults(func=_run, _settings=_setting_options(g, kinds))


def _run(args) -> int:
    import curate.brain as cb
    from curate import scores
    from curate.brain.model_source import resolve_model
    from curate.commands._dataset import open_samples

    kind = scores.get(args.score)
    given = {n: getattr(args, n) for n in args._settings if getattr(args, n) is not None}
    foreign = sorted(set(given) - {prm.name for prm in kind.params})
    if foreign:
        opts = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise SystemExit(f"error: {opts} {'is not a setting' if len(foreign) == 1 else 'are not settings'} "
                         f"of --score {kind.name} (its settings: {[prm.name for prm in kind.params]})")
    extra = {}
    if args.logp_field:
        if "generation_logp" not in kind.extras:
            raise SystemExit(f"error: --score {kind.name} has no generation log-probability for --logp-field")
        extra["generation_logp"] = args.logp_field
        if given.get("divergence", kind.param("divergence").default) == "none":
            given["divergence"] = "auto"  # the log-probability needs div f
    samples = open_samples(args)
    policy = dict(size=args.size, channels=args.channels, resize=args.resize)
    try:  # a bad or refused checkpoint (pickle, truncated, wrong format) is a clear exit
        model, description = resolve_model(
            samples, checkpoint=args.model, exact_tag=args.train_tag if args.exact_score else None,
            device=args.device, **policy)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    field = args.field or kind.field
    common = dict(score_field=field, seed=args.seed, batch_size=args.batch_size, num_workers=args.workers,
                  model_description=description, overwrite=args.overwrite, extra_fields=extra,
                  resume=not args.no_resume, progress=not args.no_progress, **policy, **given)
    if args.device is not None:
        common["device"] = args.device
    try:
        if args.shard_by_rank:
            from curate.brain.distributed import score_sharded

            r = score_sharded(samples, model, kind.name, **common)
            print(f"{field} rank {r.rank}/{r.world_size}: scored {r.scored}, failed {r.failed}, "
                  f"already done {r.skipped} of a shard of {r.shard_size}; all ranks: scored "
                  f"{r.total_scored}, failed {r.total_failed}, already done {r.total_skipped}")
            return 0
        s = cb.compute_score(samples, model, kind.name, **common)
    except (ValueError, cb.DatabaseUnavailableError, TimeoutError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{field}: scored {s.scored}, failed {s.failed}, already done {s.skipped}"
          + (" (resumed)" if s.resumed else ""))
    return 0
