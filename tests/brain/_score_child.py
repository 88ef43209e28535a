"""A scoring process for the kill-and-resume test: python _score_child.py DATASET DELAY.

Scores DATASET with the exact score of its ``train`` samples, slowed by DELAY seconds
per network call so the parent can kill it mid-run, and prints the summary as JSON.
"""
import dataclasses
import json
import sys
import time

import torch

from curate.models.exact import ExactScore


class SlowExactScore(ExactScore):
    """ExactScore that sleeps before each evaluation (same values, more time)."""

    delay = 0.0

    def eps(self, x, t):
        time.sleep(self.delay)
        return super().eps(x, t)


def main(name: str, delay: float) -> None:
    import fiftyone as fo

    from curate.brain import compute_volume_growth
    from curate.data.loader import load_images

    ds = fo.load_dataset(name)
    _, train, _ = load_images(ds.match_tags("train"), num_workers=0)
    model = SlowExactScore(train.to(torch.float64))
    model.delay = delay
    s = compute_volume_growth(ds, model, batch_size=4, num_workers=0, progress=False, steps=2)
    print("SUMMARY " + json.dumps(dataclasses.asdict(s)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
