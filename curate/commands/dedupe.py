"""`curate dedupe`: near-duplicate groups of a dataset, one member kept per group (the
first step of cleaning: dedupe -> score -> flag -> export)."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args, default_score_field
from curate.duplicates.choices import (DEFAULT_GROUPING, DEFAULT_INDEX, DEFAULT_KEEP, DEFAULT_RATIO,
                                       DEFAULT_RELATIVE,
                                       DEFAULT_THRESHOLD, DEFAULT_VERIFIER, GROUPINGS, INDEXES, KEEP_RULES, METHODS)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedupe", help="step 1: tag near-duplicates, keeping one image per group (needs no score)",
        description=("Runs curate.brain.dedupe: the first step of cleaning (dedupe -> score -> flag -> "
                     "export); by default it searches every pair of the dataset and keeps the first "
                     "member of each group, so no score is needed. --method descriptor (default): the aligned distance "
                     "of standardised thumbnails after the best zoom/shift/mirror, which survives "
                     "re-encoding, shifts, crops, brightness/colour changes and mirroring; candidates "
                     "come from a similarity index of the images' keys, stored as a FiftyOne brain "
                     "run (--brain-key). --method pixel: exact chunked search by normalised pixel L2 "
                     "(RMS difference on the [-1, 1] scale)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    p.add_argument("--method", choices=METHODS, default="descriptor",
                   help="distance that decides a duplicate pair")
    p.add_argument("--threshold", type=float, default=None,
                   help="largest distance of a duplicate pair; None: "
                        + ", ".join(f"{v} {m}" for m, v in DEFAULT_THRESHOLD.items()))
    p.add_argument("--no-mirror", action="store_true",
                   help="descriptor: a left-right mirrored copy is not a duplicate")
    p.add_argument("--k", type=int, default=10, help="descriptor: candidates per searched image")
    p.add_argument("--index", choices=INDEXES, default=DEFAULT_INDEX,
                   help="descriptor: key search (auto: exact up to 100,000 images, FAISS's inverted file "
                        "beyond; exact chunked BLAS; faiss flat / ivf; or a scikit-learn index)")
    p.add_argument("--relative", type=float, default=DEFAULT_RELATIVE,
                   help="descriptor: cap the threshold at this times the collection's background "
                        "distance (negative: no cap)")
    p.add_argument("--ratio", type=float, default=DEFAULT_RATIO,
                   help="descriptor: a pair within 1.75x the threshold is also a duplicate when its distance "
                        "is at most this times its images' distance to their 7th nearest candidate "
                        "(negative: the threshold alone)")
    p.add_argument("--no-embedding", action="store_true",
                   help="descriptor: the ratio test alone decides its pairs (default: the shipped copy "
                        "embedding judges them too)")
    p.add_argument("--verifier", action="store_true", default=DEFAULT_VERIFIER,
                   help="descriptor: the learned pair verifier also judges the ratio test's band and pairs to "
                        "2.25x the threshold (finds more strongly processed copies, but a quarter of what it adds "
                        "are other shots; slower)")
    p.add_argument("--brain-key", default="dedupe",
                   help="descriptor: brain key of the similarity index ('' = do not store it)")
    p.add_argument("--query-tag", default="",
                   help="only duplicates of samples with this tag, e.g. high_risk ('' = all pairs)")
    p.add_argument("--keep", choices=KEEP_RULES, default=DEFAULT_KEEP,
                   help="which member of a group stays untagged (first: needs no score)")
    p.add_argument("--field", default=None,
                   help=f"score field read by --keep lowest_score/highest_score (None: {default_score_field()})")
    p.add_argument("--grouping", choices=GROUPINGS, default=DEFAULT_GROUPING,
                   help="anchored: every member a duplicate of the kept image (no chains); connected: components")
    p.add_argument("--tag", default="duplicate")
    p.add_argument("--view-name", default="duplicate_groups",
                   help="saved view of the groups ('' = none)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.commands._dataset import open_samples

    samples = open_samples(args)
    try:
        groups = cb.dedupe(samples, method=args.method, threshold=args.threshold,
                           query_tag=args.query_tag or None, keep=args.keep, score_field=args.field,
                           tag=args.tag, grouping=args.grouping, mirror=not args.no_mirror, k=args.k, index=args.index,
                           relative=args.relative if args.relative >= 0 else None,
                           ratio=args.ratio if args.ratio >= 0 else None, embedding=not args.no_embedding,
                           verifier=args.verifier,
                           brain_key=args.brain_key or None, view_name=args.view_name or None,
                           progress=not args.no_progress)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(groups)} group(s); tagged {sum(len(g) - 1 for g in groups)} sample(s) {args.tag!r}")
    if groups and args.view_name:
        print(f"saved view {args.view_name!r}: the groups, the kept sample first")
    return 0

