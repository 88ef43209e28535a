"""A scoring process the fault tests start, kill, run side by side or cut off.

python _score.py DATASET [--field F] [--delay S] [--steps T] [--axes N] [--batch-size B] [--go-file F]
                      [--make-digits DIR]

Scores DATASET with the exact score of its ``train`` samples, slowed by ``--delay``
seconds per network call (same values, more time), and prints ``SUMMARY {json}``.
A lost database prints ``DBERROR message`` and exits 3.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from curate.models.exact import ExactScore


class SlowExactScore(ExactScore):
    """ExactScore that sleeps before each evaluation."""

    delay = 0.0

    def eps(self, x, t):
        time.sleep(self.delay)
        return super().eps(x, t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--field", default="volume_growth")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--axes", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--make-digits", default=None, metavar="DIR",
                   help="first create DATASET (persistent, 20 + 20 digits as PNGs in DIR) if missing")
    p.add_argument("--go-file", default=None,
                   help="after the imports, wait until this file exists (lines processes up)")
    a = p.parse_args()

    import fiftyone as fo

    from curate.brain import DatabaseUnavailableError, compute_volume_growth
    from curate.data.loader import load_images

    if a.make_digits and not fo.dataset_exists(a.dataset):
        from curate.data.datasets import load_digits

        load_digits(images_dir=a.make_digits, dataset_name=a.dataset, max_samples=20, persistent=True,
                    progress=False)
    ds = fo.load_dataset(a.dataset)
    _, train, _ = load_images(ds.match_tags("train"), num_workers=0)
    model = SlowExactScore(train.to(torch.float64))
    model.delay = a.delay
    print("STARTED", flush=True)
    while a.go_file and not os.path.exists(a.go_file):
        time.sleep(0.001)
    try:
        s = compute_volume_growth(ds, model, score_field=a.field, steps=a.steps, axes=a.axes,
                                  batch_size=a.batch_size, num_workers=0, progress=False)
    except DatabaseUnavailableError as e:
        print("DBERROR " + str(e), flush=True)
        sys.exit(3)
    print("SUMMARY " + json.dumps(dataclasses.asdict(s)), flush=True)


if __name__ == "__main__":
    main()
