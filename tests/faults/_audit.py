"""An audit process the fault tests start and kill.

python _audit.py DATASET OUT_DIR [--key K] [--samples N] [--delay S]

Audits DATASET's ``train`` samples with the exact score of training digits 0..4 and 15
held-out digits (some samples copy, some do not), slowed by ``--delay`` seconds per
network call (same values, more time), and prints ``SUMMARY {json}``.
"""
import argparse
import dataclasses
import json
import time

import torch

from curate.models.exact import ExactScore


class SlowExactScore(ExactScore):
    """ExactScore that sleeps before each evaluation."""

    delay = 0.0

    def eps(self, x, t):
        time.sleep(self.delay)
        return super().eps(x, t)


def model_of(ds, delay: float = 0.0) -> SlowExactScore:
    from curate.data.loader import load_images

    _, tr, _ = load_images(ds.match_tags("train"), num_workers=0)
    _, te, _ = load_images(ds.match_tags("test"), num_workers=0)
    model = SlowExactScore(torch.cat([tr[:5], te[:15]]).to(torch.float64))
    model.delay = delay
    return model


def audit(ds, model, out_dir, key="reproductions", samples=64):
    from curate.brain import compute_reproductions

    return compute_reproductions(ds.match_tags("train"), model, samples, audit_key=key, out_dir=out_dir,
                                 steps=10, batch_size=8, num_workers=0, progress=False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("out_dir")
    p.add_argument("--key", default="reproductions")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()

    import fiftyone as fo

    ds = fo.load_dataset(a.dataset)
    model = model_of(ds, a.delay)
    print("STARTED", flush=True)
    s = audit(ds, model, a.out_dir, a.key, a.samples)
    print("SUMMARY " + json.dumps(dataclasses.asdict(s)), flush=True)


if __name__ == "__main__":
    main()
