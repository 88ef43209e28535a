"""`curate export`: write the cleaned dataset."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="step 4: export the samples not tagged for removal",
        description="Runs curate.brain.export_clean (refuses a non-empty directory without --overwrite).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    p.add_argument("--export-dir", required=True)
    p.add_argument("--type", default=None,
                   help="a fiftyone.types dataset type (None: ImageClassificationDirectoryTree when "
                        "there is a label field, else ImageDirectory)")
    p.add_argument("--label-field", default=None,
                   help="classification field (None: ground_truth or the only one; none: images only)")
    p.add_argument("--exclude-tags", nargs="*", default=["duplicate"],
                   help="leave out samples with these tags (add high_risk to drop all flagged)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.commands._dataset import open_samples

    samples = open_samples(args)
    try:
        n = cb.export_clean(samples, args.export_dir, dataset_type=args.type,
                            label_field=args.label_field, exclude_tags=tuple(args.exclude_tags),
                            overwrite=args.overwrite)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"exported {n} sample(s) to {args.export_dir}")
    return 0
