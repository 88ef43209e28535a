"""`curate flag`: tag the highest risk scores and save a view of them."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args, default_score_field


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "flag", help="step 3: tag high-risk images (the highest scores) and save a view",
        description="Runs curate.brain.flag_high_risk with exactly one rule.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    p.add_argument("--field", default=None,
                   help=f"score field (None: {default_score_field()}, the default score's, as `curate score` writes)")
    r = p.add_mutually_exclusive_group(required=True)
    r.add_argument("--top-k", type=int, help="the k highest scores")
    r.add_argument("--percentile", type=float, help="scores >= this percentile (95 = top 5%%)")
    r.add_argument("--threshold", type=float, help="scores >= this value")
    p.add_argument("--unique", action="store_true",
                   help="with --top-k: count each duplicate group (--group-field, set by `curate dedupe`) once")
    p.add_argument("--group-field", default="duplicate_group", help="duplicate groups for --unique")
    p.add_argument("--tag", default="high_risk")
    p.add_argument("--view-name", default=None, help="saved view name (default: the tag)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.commands._dataset import open_samples

    samples = open_samples(args)
    try:
        view = cb.flag_high_risk(samples, args.field, top_k=args.top_k, percentile=args.percentile,
                                 threshold=args.threshold, tag=args.tag, view_name=args.view_name,
                                 unique=args.unique, group_field=args.group_field)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"tagged {view.count()} sample(s) {args.tag!r}; saved view {args.view_name or args.tag!r}")
    return 0

