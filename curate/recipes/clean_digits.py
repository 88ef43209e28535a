"""Clean and retrain on scikit-learn's digits (CPU, minutes): the README's main job.

    python -m curate.recipes.clean_digits                       # preset "default"
    python -m curate.recipes.clean_digits --config smoke --out /tmp/cd
    python -m curate.recipes.clean_digits --config seeds3      # every arm x 3 training seeds
    python -m curate.recipes.clean_digits --set clean.top_k=150 --dry-run

The training split of the 1,797 real 8x8 digits goes into a FiftyOne dataset (PNGs
in the run folder) with a few images planted many times over; a tiny U-Net is
trained on it and scores every sample. Four arms then train with one budget: every
sample, the whole set de-duplicated, dedupe minus the top-k unique images by score
(exported and retrained on), and dedupe minus k unique images at random. Samples of
every model are checked for copies of training images (Carlini and Gu criteria, with
bootstrap intervals) and ``report.md`` in the run folder says what the score adds
beyond dedupe. See :mod:`curate.recipes.clean` for the stages.
"""
from __future__ import annotations

import sys

from curate.recipes.clean import loop

RECIPE = "clean_digits"


def build(name: str, run_path, cfg: dict):
    """The digits training split as a persistent FiftyOne dataset named ``name``."""
    from curate.data.datasets import load_digits
    from curate.recipes.clean.settings import images_to_load

    ds = load_digits("train", images_dir=run_path / "images", dataset_name=name, max_samples=images_to_load(cfg),
                     overwrite=True, persistent=True, progress=True)
    return {"source": "scikit-learn digits, train split (index % 5 != 4)", "n_source": ds.count()}


def main(argv: list[str] | None = None) -> dict | None:
    return loop.main(RECIPE, __doc__.splitlines()[0], "default", argv, build)


if __name__ == "__main__":
    main(sys.argv[1:])
