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
    """The kinds' settings as options, grouped under each kind in ``--help``.

    One option per setting name (kinds share names such as ``--t``): it is listed in the
    group of the first kind that takes it; later kinds' groups name it with their own
    default. Its default (None) means 'the chosen kind's'."""
    seen: dict[str, list] = {}
    for k in kinds:
        for prm in k.params:
            seen.setdefault(prm.name, []).append((k, prm))
    for name in seen:
        if name in _OWN:
            raise ValueError(f"score setting {name!r} clashes with an option of `curate score`")
    for k in kinds:
        shared = [(prm.name, prm.default) for prm in k.params if seen[prm.name][0][0] is not k]
        desc = k.summary + (". Also takes " + ", ".join(f"--{n.replace('_', '-')} (default {d})" for n, d in shared)
                            + " (above)." if shared else "")
        g = p.add_argument_group(f"--score {k.name}", description=desc)
        for prm in k.params:
            uses = seen[prm.name]
            if uses[0][0] is not k:
                continue
            choices = sorted({c for _, q in uses for c in (q.choices or ())}) or None
            kw = dict(type=prm.type, choices=choices) if prm.type is not bool else \
                dict(type=lambda s: s.lower() in ("1", "true", "yes"))
            p_default = f"default {prm.default}" + ("".join(f"; {u.name}: {q.default}" for u, q in uses[1:]))
            g.add_argument("--" + prm.name.replace("_", "-"), dest=prm.name, default=None,
                           metavar=prm.name.upper(), help=f"{prm.help} ({p_default})", **kw)
    return list(seen)


def register(subparsers) -> None:
    from curate import scores
    from curate.scores import DEFAULT_KIND

    kinds = scores.kinds()
    p = subparsers.add_parser(
        "score",
        help="step 2: score each image of a FiftyOne dataset (higher = more at risk of being reproduced)",
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
    p.add_argument("--score", default=None, choices=[k.name for k in kinds],
                   help=f"the score kind (default: {DEFAULT_KIND}; volume_growth is the paper's Algorithm 1)")
    p.add_argument("--field", default=None, help="score field, also the brain key (default: the kind's "
                   "name, which `curate flag`, `curate dedupe` and the Python API read by default)")
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
    ordered = sorted(kinds, key=lambda k: k.name != DEFAULT_KIND)  # the default kind's settings first
    p.set_defaults(func=_run, _settings=_setting_options(p, ordered))


def _run(args) -> int:
    import curate.brain as cb
    from curate import scores
    from curate.brain.model_source import resolve_model
    from curate.commands._dataset import open_samples

    kind = scores.get(scores.resolve_kind(args.score))
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
