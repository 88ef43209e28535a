"""Shared options of the FiftyOne sub-commands: which dataset, which samples."""
from __future__ import annotations


def add_dataset_args(p) -> None:
    p.add_argument("--dataset", required=True, help="name of the FiftyOne dataset")
    p.add_argument("--tags", nargs="+", default=None,
                   help="only samples with any of these tags (e.g. train)")
    p.add_argument("--saved-view", default=None, help="only the samples of this saved view")


def open_samples(args):
    """The dataset (or view) the options name; a clear exit when it does not exist."""
    import fiftyone as fo

    if not fo.dataset_exists(args.dataset):
        known = ", ".join(fo.list_datasets()) or "none"
        raise SystemExit(f"error: no FiftyOne dataset named {args.dataset!r} (known: {known})")
    samples = fo.load_dataset(args.dataset)
    if args.saved_view:
        if not samples.has_saved_view(args.saved_view):
            raise SystemExit(f"error: dataset {args.dataset!r} has no saved view {args.saved_view!r}")
        samples = samples.load_saved_view(args.saved_view)
    if args.tags:
        samples = samples.match_tags(args.tags)
    return samples


def default_score_field() -> str:
    """The field of the score ``curate score`` computes by default (flag and dedupe read it)."""
    from curate import scores

    return scores.field_of(None)
