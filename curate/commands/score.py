"""`curate score`: volume-growth (or denoising) scores of a FiftyOne dataset, stored as a brain run."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args

SCORES = ("log_growth", "divergence", "generation_logp", "denoising_score")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score each image of a FiftyOne dataset (volume growth; higher = easier to reproduce)",
        description=(
            "Runs curate.brain.compute_volume_growth (or compute_denoising_score with --score "
            "denoising_score): writes the score to a float field batch by batch and registers a "
            "brain run (listed by "
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
    p.add_argument("--score", default="log_growth", choices=SCORES,
                   help="log_growth (Algorithm 1), divergence (int div f dt), generation_logp, or "
                        "denoising_score (minus the denoising loss at --t)")
    p.add_argument("--field", default=None,
                   help="score field, also the brain key (default: volume_growth for log_growth, "
                        "else the --score name)")
    p.add_argument("--divergence", choices=["auto", "exact", "hutchinson"], default="auto",
                   help="how div f is integrated (divergence, generation_logp, --logp-field)")
    p.add_argument("--probes", type=int, default=1, help="Hutchinson probes per step")
    p.add_argument("--t", type=float, default=0.01, help="denoising_score: time of the noised image")
    p.add_argument("--draws", type=int, default=4, help="denoising_score: noise draws per image")
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
    field = args.field or ("volume_growth" if args.score == "log_growth" else args.score)
    common = dict(score_field=field, seed=args.seed, batch_size=args.batch_size, num_workers=args.workers,
                  model_description=description, overwrite=args.overwrite,
                  resume=not args.no_resume, progress=not args.no_progress, **policy)
    if args.device is not None:
        common["device"] = args.device
    if args.score == "denoising_score":
        if args.shard_by_rank or args.logp_field:
            raise SystemExit("error: --score denoising_score takes neither --shard-by-rank nor --logp-field")
        try:
            s = cb.compute_denoising_score(samples, model, t=args.t, draws=args.draws, **common)
        except (ValueError, cb.DatabaseUnavailableError, TimeoutError) as e:
            raise SystemExit(f"error: {e}") from None
        print(f"{field}: scored {s.scored}, failed {s.failed}, already done {s.skipped}"
              + (" (resumed)" if s.resumed else ""))
        return 0
    settings = dict(common, logp_field=args.logp_field, score=args.score, divergence=args.divergence,
                    probes=args.probes, method=args.method, axes=args.axes, sigma=args.sigma,
                    steps=args.steps)
    try:
        if args.shard_by_rank:
            from curate.brain.distributed import score_sharded

            r = score_sharded(samples, model, **settings)
            print(f"{field} rank {r.rank}/{r.world_size}: scored {r.scored}, failed {r.failed}, "
                  f"already done {r.skipped} of a shard of {r.shard_size}; all ranks: scored "
                  f"{r.total_scored}, failed {r.total_failed}, already done {r.total_skipped}")
            return 0
        s = cb.compute_volume_growth(samples, model, **settings)
    except (ValueError, cb.DatabaseUnavailableError, TimeoutError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{field}: scored {s.scored}, failed {s.failed}, already done {s.skipped}"
          + (" (resumed)" if s.resumed else ""))
    return 0
