"""`curate score`: volume-growth scores of a FiftyOne dataset, stored as a brain run."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score each image of a FiftyOne dataset (volume growth; higher = easier to reproduce)",
        description=(
            "Runs curate.brain.compute_volume_growth: writes log volume growth to a float "
            "field batch by batch and registers a brain run (listed by "
            "dataset.list_brain_runs()). Interrupted runs resume when started again with the "
            "same settings. Choose the model with --model or --exact-score."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", default=None, help="checkpoint file (curate.load_model)")
    m.add_argument("--exact-score", action="store_true",
                   help="use the exact score of the dataset's samples tagged --train-tag")
    p.add_argument("--train-tag", default="train", help="tag of the training split for --exact-score")
    p.add_argument("--field", default="volume_growth", help="score field (also the brain key)")
    p.add_argument("--logp-field", default=None, help="also store the generation log-probability here")
    p.add_argument("--method", choices=["fd", "jvp"], default="fd")
    p.add_argument("--axes", type=int, default=1, help="number of axes N")
    p.add_argument("--sigma", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=1, help="Euler steps T")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image size (default: the first image's)")
    p.add_argument("--channels", type=int, choices=[1, 3], default=None)
    p.add_argument("--resize", action="store_true", help="resize images of another size")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the model's)")
    p.add_argument("--overwrite", action="store_true", help="replace another run's scores")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an earlier run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shard-by-rank", action="store_true",
                   help="under torchrun: score only this process's shard (RANK of WORLD_SIZE); "
                        "see curate.brain.distributed")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.brain.models import resolve_model
    from curate.commands._dataset import open_samples

    samples = open_samples(args)
    policy = dict(size=args.size, channels=args.channels, resize=args.resize)
    try:  # a bad or refused checkpoint (pickle, truncated, wrong format) is a clear exit
        model, description = resolve_model(
            samples, checkpoint=args.model, exact_tag=args.train_tag if args.exact_score else None,
            device=args.device, **policy)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    settings = dict(score_field=args.field, logp_field=args.logp_field,
                    method=args.method, axes=args.axes, sigma=args.sigma, steps=args.steps,
                    seed=args.seed, batch_size=args.batch_size, num_workers=args.workers,
                    model_description=description, overwrite=args.overwrite,
                    resume=not args.no_resume, progress=not args.no_progress, **policy)
    if args.device is not None:
        settings["device"] = args.device
    try:
        if args.shard_by_rank:
            from curate.brain.distributed import score_sharded

            r = score_sharded(samples, model, **settings)
            print(f"{args.field} rank {r.rank}/{r.world_size}: scored {r.scored}, failed {r.failed}, "
                  f"already done {r.skipped} of a shard of {r.shard_size}; all ranks: scored "
                  f"{r.total_scored}, failed {r.total_failed}, already done {r.total_skipped}")
            return 0
        s = cb.compute_volume_growth(samples, model, **settings)
    except (ValueError, cb.DatabaseUnavailableError, TimeoutError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.field}: scored {s.scored}, failed {s.failed}, already done {s.skipped}"
          + (" (resumed)" if s.resumed else ""))
    return 0
