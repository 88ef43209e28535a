"""`curate audit`: which training images does the model copy? The reproduction audit of a
FiftyOne dataset as a brain run, and how far a score field can be trusted on this model."""
from __future__ import annotations

import argparse

from curate.commands._dataset import add_dataset_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="sample the model, find the training images it copies, store the counts (a brain run)",
        description=(
            "Runs curate.brain.compute_reproductions: draws --samples images from the model in seed "
            "blocks, saves them as PNGs and as a FiftyOne dataset '<dataset>-<key>-generated', matches each "
            "against the training samples (Carlini, Gu, RMS and the descriptor's edit-robust aligned "
            "distance) and stores on every training sample how many generated samples copy it, with a rate "
            "and its Wilson 95 % interval. Copies beside their sources: the grouped dataset "
            "'<dataset>-<key>-copies'. Interrupted runs resume with the same command; "
            "dataset.delete_brain_run(KEY) removes everything. With --evaluate, also judges a score field "
            "against the audit (AUROC, Spearman, precision at k, split-half noise ceiling, isotonic "
            "p_reproduce)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", default=None, help="checkpoint file (curate.load_model)")
    m.add_argument("--exact-score", action="store_true",
                   help="use the exact score of the dataset's samples tagged --train-tag")
    p.add_argument("--train-tag", default="train", help="training split's tag for --exact-score")
    p.add_argument("--samples", type=int, default=1024, help="generated samples to draw")
    p.add_argument("--key", default="reproductions", help="audit key: brain key and field prefix")
    p.add_argument("--criterion", default="carlini", choices=["carlini", "gu", "rms", "aligned"],
                   help="the copies '<key>' counts (every criterion gets its own field)")
    p.add_argument("--method", default="euler", choices=["euler", "heun", "em"], help="sampler")
    p.add_argument("--steps", type=int, default=100, help="sampler steps")
    p.add_argument("--seed", type=int, default=0, help="sample j's noise depends only on (seed, j)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per block (sampler call, database write)")
    p.add_argument("--out-dir", default=None, help="folder for the PNGs (None: <fiftyone dataset dir>/curate-audits/<dataset>-<key>)")
    p.add_argument("--memory-mb", type=float, default=512.0, help="working memory of the matching's blocks")
    p.add_argument("--no-aligned", action="store_true", help="skip the edit-robust aligned distance")
    p.add_argument("--no-mirror", action="store_true", help="a mirrored copy is no copy (aligned criterion)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (None: the model's)")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads")
    p.add_argument("--overwrite", action="store_true", help="replace another audit under the same key")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an earlier run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--shard-by-rank", action="store_true",
                   help="under torchrun: sample this process's blocks (RANK of WORLD_SIZE)")
    p.add_argument("--evaluate", nargs="*", default=None, metavar="FIELD",
                   help="judge these score fields against the audit (no FIELD: the default score kind's "
                        "field); stores p_reproduce (of the first) and prints the report")
    p.add_argument("--p-field", default="p_reproduce", help="field for the calibrated p_reproduce")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="plot the first --evaluate field against the copies per unique image into this file")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import curate.brain as cb
    from curate.brain.model_source import resolve_model
    from curate.commands._dataset import default_score_field, open_samples
    from curate.reproduction.evaluation import report_lines

    train = open_samples(args)
    try:
        model, description = resolve_model(train, checkpoint=args.model,
                                           exact_tag=args.train_tag if args.exact_score else None,
                                           device=args.device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.exact_score and not args.tags and not args.saved_view:
        train = train.match_tags(args.train_tag)  # audit the split the exact score memorizes
    kw = {}
    if not args.shard_by_rank:
        kw = dict(rank=0, world_size=1)
    try:
        s = cb.compute_reproductions(
            train, model, args.samples, audit_key=args.key, criterion=args.criterion, method=args.method,
            steps=args.steps, seed=args.seed, batch_size=args.batch_size, out_dir=args.out_dir,
            memory_mb=args.memory_mb, aligned=not args.no_aligned, mirror=not args.no_mirror,
            device=args.device, model_description=description, num_workers=args.workers,
            progress=not args.no_progress, resume=not args.no_resume, overwrite=args.overwrite, **kw)
    except (ValueError, cb.DatabaseUnavailableError, TimeoutError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.key}: generated {s.generated} (already done {s.skipped}, NaN/Inf {s.failed})"
          + (" (resumed)" if s.resumed else "") + f"; {s.copies} copies ({args.criterion}) of "
          f"{s.reproduced} training samples; {s.train_failed} training image(s) unreadable")
    print(f"  generated samples: dataset {s.generated_dataset!r}; copies beside sources: {s.copies_dataset!r}")
    from curate.brain._audit_run import load_results

    res = load_results(train._dataset, args.key)
    if res is not None and res.summary:
        print("  copies per criterion: " + ", ".join(f"{k} {v}" for k, v in res.summary["copies"].items()))
    if args.evaluate is not None:
        fields = args.evaluate or [default_score_field()]
        for i, f in enumerate(fields):
            try:
                ev = cb.evaluate_score(train, f, args.key, p_field=args.p_field if i == 0 else None)
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
            print("\n".join(report_lines(ev, f)))
            if i == 0 and args.plot:
                from curate.reproduction.plot import score_vs_reproductions

                score_vs_reproductions(ev.scores, ev.counts, args.plot, score_name=f, p=ev.p,
                                       samples=ev.m_a + ev.m_b, title=f"{f} against the audit {args.key!r}")
                print(f"  plot: {args.plot}")
    return 0
