"""The options of the near-duplicate benchmark, one definition for both entry points:
``curate bench dedupe`` and ``python -m curate.bench.dedupe`` (see
:mod:`curate.bench.dedupe`). Light on purpose: ``curate --help`` imports it."""
from __future__ import annotations

import argparse
from pathlib import Path

from curate.duplicates.choices import DEFAULT_RATIO, DEFAULT_VERIFIER, INDEXES, METHODS

DESCRIPTION = ("dedupe on CIFAR-10 training images plus planted edited copies (known answers): "
               "precision and recall per kind of edit, time and peak memory, for each method")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options to ``p`` (use ArgumentDefaultsHelpFormatter to show them)."""
    p.add_argument("--cifar-root", required=True, type=Path,
                   help="CIFAR-10 as an image tree <root>/{train,test}/<class>/<file> "
                        "(order.csv gives the official order; without it, sorted order)")
    p.add_argument("--originals", type=int, default=10000, help="training images used")
    p.add_argument("--first", type=int, default=0, help="position (official order) of the first training image")
    p.add_argument("--copies", type=int, default=200, help="planted edited copies")
    p.add_argument("--seed", type=int, default=0, help="seed of the edits")
    p.add_argument("--edits", choices=("real", "classic"), default="real",
                   help="real: mild combined edits as measured on real near-duplicate pairs; classic: 1-3 strong "
                        "edits (the former benchmark)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods compared")
    p.add_argument("--threshold", type=float, default=None,
                   help="descriptor threshold; unset: dedupe's default")
    p.add_argument("--pixel-threshold", type=float, default=None, help="pixel threshold; unset: dedupe's default")
    p.add_argument("--k", type=int, default=10, help="candidates per image")
    p.add_argument("--ratio", type=float, default=DEFAULT_RATIO,
                   help="descriptor: dedupe's ratio test beyond the threshold (negative: the threshold alone)")
    p.add_argument("--no-embedding", action="store_true",
                   help="descriptor: the ratio test alone (default: dedupe's copy embedding judges its pairs too)")
    p.add_argument("--verifier", action="store_true", default=DEFAULT_VERIFIER,
                   help="descriptor: dedupe's pair verifier option (the band and pairs to 2.25x the threshold)")
    p.add_argument("--index", default="exact", choices=INDEXES, help="key search of the descriptor")
    p.add_argument("--scale", type=int, default=0,
                   help="also time describe + all-pairs search over this many CIFAR-10 images "
                        "(train, then test; e.g. 60000); 0: skip")
    p.add_argument("--index-sample", type=int, default=300,
                   help="queries timed for the ball-tree key search in --scale")
    p.add_argument("--compare", action="store_true",
                   help="also compare pixel, thumbnail, GIST-key and aligned distances without a threshold "
                        "(slow: every candidate pair is aligned exactly; 9 minutes at 10,000 images)")
    p.add_argument("--out", type=Path, default=Path("dedupe-bench"), help="results folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m curate.bench.dedupe", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_arguments(p).parse_args(argv)
