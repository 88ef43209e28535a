"""`curate dedupe`: near-duplicate groups among flagged images and the rest."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedupe", help="tag near-duplicates of flagged images, keeping one per group",
        description=("Runs curate.brain.dedupe: exact chunked search by normalised pixel L2 "
                     "(RMS difference on the [-1, 1] scale)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    p.add_argument("--threshold", type=float, default=0.1, help="largest distance of a duplicate pair")
    p.add_argument("--query-tag", default="high_risk",
                   help="search duplicates of samples with this tag ('' = all pairs)")
    p.add_argument("--keep", choices=["lowest_score", "highest_score", "first"], default="lowest_score",
                   help="which member of a group stays untagged")
    p.add_argument("--field", default="volume_growth", help="score field read by --keep")
    p.add_argument("--tag", default="duplicate")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.commands._dataset import open_samples

    samples = open_samples(args)
    try:
        groups = cb.dedupe(samples, threshold=args.threshold, query_tag=args.query_tag or None,
                           keep=args.keep, score_field=args.field, tag=args.tag)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(groups)} group(s); tagged {sum(len(g) - 1 for g in groups)} sample(s) {args.tag!r}")
    return 0
