"""Clean and retrain on CIFAR-10 (a GPU for the ``subset`` and ``paper`` presets).

    python -m curate.recipes.clean_cifar --cifar-root data/cifar10             # preset "subset"
    python -m curate.recipes.clean_cifar --config smoke --cifar-root data/cifar10 --out /tmp/cc
    python -m curate.recipes.clean_cifar --config paper --download             # all 50,000 + flips

``--cifar-root`` is a folder holding ``cifar-10-batches-py`` (or that folder itself), or
an image tree ``train/<class>/...`` such as ``../shared/data/cifar10``; ``--download``
fetches the batches there with torchvision when nothing is there (needs internet).
The training images go into a FiftyOne dataset (PNGs in the run folder), optionally
with planted duplicates, and the loop of :mod:`curate.recipes.clean` runs: baseline,
score, the four arms (baseline, dedupe, dedupe + top-k by score exported and retrained
on, dedupe + k at random) per training seed, samples, memorization (Carlini, Gu, with
bootstrap intervals), ``report.md``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from curate.recipes.clean import loop

RECIPE = "clean_cifar"


def build(name: str, run_path, cfg: dict):
    """The first ``data.n_images`` CIFAR-10 training images in the official order (0 = all
    50,000), at ``data.image_size`` (0 = 32), as a persistent FiftyOne dataset named ``name``."""
    from curate.data.datasets import load_cifar10
    from curate.recipes.clean.settings import images_to_load

    d = cfg["data"]
    root = Path(d["root"]).expanduser()
    size = int(d.get("image_size", 0) or 0) or None
    try:
        ds = load_cifar10(root, split="train", dataset_name=name, download=bool(d["download"]),
                          images_dir=run_path / "images", max_samples=images_to_load(cfg), image_size=size,
                          overwrite=True, persistent=True, progress=True)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc} (set it with --cifar-root, or --download when online)") from None
    return {"source": f"CIFAR-10 training images under {root}" + (f", resized to {size}x{size}" if size else ""),
            "n_source": ds.count()}


def _args(parser) -> None:
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR-10 with torchvision into --cifar-root when missing (needs internet)")


def _overrides(args) -> list[str]:
    out = []
    if args.download:
        out.append("data.download=true")
    return out


def main(argv: list[str] | None = None) -> dict | None:
    return loop.main(RECIPE, __doc__.splitlines()[0], "subset", argv, build, extra_args=_args,
                       extra_overrides=_overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
