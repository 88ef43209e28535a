"""Clean and retrain on scikit-learn's digits (CPU, minutes): the README's main job.

    python -m curate.recipes.clean_digits                       # preset "default"
    python -m curate.recipes.clean_digits --config smoke --out /tmp/cd
    python -m curate.recipes.clean_digits --set clean.top_k=300 --dry-run

The training split of the 1,797 real 8x8 digits goes into a FiftyOne dataset (PNGs
in the run folder) with a few images planted many times over; a tiny U-Net is
trained on it, every sample is scored, the top-k are flagged and de-duplicated, the
rest exported and retrained on; a control retrains after removing as many samples at
random. Samples of all three models are checked for copies of training images
(Carlini and Gu criteria) and ``report.md`` in the run folder says what changed.
See :mod:`curate.recipes._clean` for the stages.
"""
from __future__ import annotations

import sys

from curate.recipes import _clean

RECIPE = "clean_digits"


def build(name: str, run, cfg: dict):
    """The digits training split as a persistent FiftyOne dataset named ``name``."""
    from curate.data.datasets import load_digits

    n = int(cfg["data"]["n_images"]) or None
    ds = load_digits(run.path / "images", split="train", dataset_name=name, max_samples=n, overwrite=True,
                     persistent=True, progress=True)
    return {"source": "scikit-learn digits, train split (index % 5 != 4)", "n_source": ds.count()}


def main(argv: list[str] | None = None) -> dict | None:
    return _clean.main(RECIPE, __doc__.splitlines()[0], "default", argv, build)


if __name__ == "__main__":
    main(sys.argv[1:])
