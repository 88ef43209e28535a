"""FiftyOne datasets with the schema of FiftyOne's zoo ``cifar10``.

Every dataset built here has PNG files on disk, a ``ground_truth``
:class:`fiftyone.core.labels.Classification`, a ``train`` or ``test`` tag on each
sample and ``dataset.default_classes``, so code written against
``foz.load_zoo_dataset("cifar10")`` works unchanged on them.

* :func:`load_cifar10` reads a local ``cifar-10-batches-py`` folder or a CIFAR image
  tree (downloading the batches with torchvision only when ``download=True``). The
  batches are Python pickles; they are read with a restricted unpickler that can only
  rebuild plain containers and numpy arrays, so a tampered file cannot run code.
* :func:`load_image_tree` imports any ``<split>/<class>/<image>`` tree with FiftyOne's
  own ``ImageClassificationDirectoryTree`` importer.
* :func:`load_digits` writes scikit-learn's real 8x8 digits as PNGs (no download).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from curate import _progress
from curate.data.cifar import CLASSES as CIFAR10_CLASSES
from curate.data.cifar import read_cifar_batch  # noqa: F401  (public here since the first release)

DIGITS_CLASSES = [str(i) for i in range(10)]
_SPLITS = ("train", "test")


# ------------------------------------------------------------------ dataset building
def _splits(split) -> list[str]:
    if split is None:
        return list(_SPLITS)
    names = [split] if isinstance(split, str) else list(split)
    bad = [s for s in names if s not in _SPLITS]
    if bad:
        raise ValueError(f"split must be 'train', 'test', a list of them or None; got {bad}")
    return names


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write (H, W) or (H, W, 3) uint8 as PNG, atomically (a killed run leaves no half file)."""
    from PIL import Image

    if path.is_file():
        return
    tmp = path.with_suffix(".png.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def _existing(name: str, overwrite: bool):
    import fiftyone as fo

    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    return None


def _build(name, images_by_split, labels_by_split, classes, images_dir: Path, *, persistent, progress):
    """Write PNGs under ``images_dir/<split>/data/`` and add one sample per image."""
    import fiftyone as fo

    dataset = fo.Dataset(name, persistent=persistent)
    dataset.default_classes = list(classes)
    total = sum(len(v) for v in images_by_split.values())
    with _progress.progress(total, f"writing {name}", progress) as advance:
        for split, images in images_by_split.items():
            out = images_dir / split / "data"
            out.mkdir(parents=True, exist_ok=True)
            samples = []
            for i, (image, label) in enumerate(zip(images, labels_by_split[split])):
                path = out / f"{i:06d}.png"
                _write_png(path, image)
                samples.append(fo.Sample(
                    filepath=str(path.resolve()),
                    tags=[split],
                    ground_truth=fo.Classification(label=classes[int(label)]),
                ))
                advance(1)
            dataset.add_samples(samples, progress=False)
    dataset.save()
    return dataset


def load_cifar10(root, split=None, *, dataset_name: str | None = None, download: bool = False,
                 images_dir=None, max_samples: int | None = None, image_size: int | None = None,
                 overwrite: bool = False, persistent: bool = False, progress: bool = True):
    """CIFAR-10 as a FiftyOne dataset with the zoo ``cifar10`` schema, from a local copy.

    Args:
        root: a folder holding ``cifar-10-batches-py`` (or that folder itself), or an image
            tree ``<root>/<split>/<class>/<file>`` (FiftyOne's ImageClassificationDirectoryTree,
            e.g. ``../shared/data/cifar10``; its ``order.csv`` names the official indices).
        split: ``"train"``, ``"test"``, a list of them, or None for both.
        dataset_name: default as the zoo names its datasets: ``"cifar10"``, then
            ``-<split>`` when a split is given, then ``-<max_samples>``. An existing dataset
            of that name is returned as is unless ``overwrite=True``.
        download: fetch the batches with torchvision when nothing is there (needs internet).
        images_dir: where written PNGs go (default ``<root>/cifar10-png``; a read-only
            tree needs another folder when PNGs are written).
        max_samples: keep the first ``max_samples`` images *of each split* (official
            order), as ``fiftyone.zoo.load_zoo_dataset`` counts them.
        image_size: resize to this side (PIL box filter), e.g. 16 for CPU experiments.

    A whole tree at its own size is imported in place with FiftyOne's importer; otherwise
    the chosen images are written as PNGs in a tree under ``images_dir`` that the same
    importer reads. Every sample gets ``cifar_index``, its index in the official split.
    Returns a :class:`fiftyone.core.dataset.Dataset`.
    """
    from curate.data import cifar

    splits = _splits(split)
    name = dataset_name or _zoo_name("cifar10", split, max_samples)
    existing = _existing(name, overwrite)
    if existing is not None:
        return existing
    root = Path(root).expanduser()
    if cifar.find_batches(root) is None and not cifar.is_image_tree(root):
        if not download:
            raise FileNotFoundError(
                f"no CIFAR-10 under {root} (neither cifar-10-batches-py nor an image tree "
                "<root>/train/<class>/); copy it there or pass download=True (needs internet)")
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    if cifar.is_image_tree(root) and cifar.find_batches(root) is None and max_samples is None \
            and image_size is None:
        ds = load_image_tree(root, splits, dataset_name=name, persistent=persistent, progress=progress)
        ds.default_classes = list(CIFAR10_CLASSES)
        ds.save()
        index = {str(p.resolve()): i for s in splits for i, _, p in cifar.tree_files(root, s)}
        ds.set_values("cifar_index", [index[f] for f in ds.values("filepath")])
        return ds
    out = Path(images_dir) if images_dir is not None else root / "cifar10-png"
    for s in splits:
        n = cifar.split_size(root, s)
        images, labels, index = cifar.read_split(root, s, range(min(n, max_samples or n)))
        if image_size is not None:
            images = cifar.resize(images, int(image_size))
        _write_tree(out / s, images, labels, index, CIFAR10_CLASSES, progress=progress, label=f"{name} {s}")
    ds = load_image_tree(out, splits, dataset_name=name, persistent=persistent, progress=progress)
    ds.default_classes = list(CIFAR10_CLASSES)
    ds.save()
    ds.set_values("cifar_index", [int(Path(f).stem) for f in ds.values("filepath")])
    return ds


def _write_tree(folder: Path, images, labels, index, classes, *, progress, label) -> None:
    """PNGs ``folder/<class>/<index>.png`` (atomically; existing files are kept)."""
    with _progress.progress(len(images), f"writing {label}", progress) as advance:
        for image, lab, i in zip(images, labels, index):
            d = folder / classes[int(lab)]
            d.mkdir(parents=True, exist_ok=True)
            _write_png(d / f"{int(i):05d}.png", image)
            advance(1)


def load_image_tree(root, split=None, *, dataset_name: str | None = None, max_samples: int | None = None,
                    shuffle_seed: int | None = None, label_field: str = "ground_truth", overwrite: bool = False,
                    persistent: bool = False, progress: bool | None = None):
    """Any image tree as a FiftyOne dataset, through FiftyOne's own importer
    (``fo.types.ImageClassificationDirectoryTree``).

    Args:
        root: ``<root>/<split>/<class>/<image>`` (each split tagged with its name), or
            ``<root>/<class>/<image>`` (no split, no tags).
        split: split folder(s) to import (default: ``train`` and ``test`` where present).
        dataset_name: the dataset's name (default: the folder's); an existing one is
            returned unless ``overwrite=True``.
        max_samples, shuffle_seed: the importer's subset per split (a seeded shuffle first
            when ``shuffle_seed`` is given).
        label_field: the Classification field of the folder names.
        progress: FiftyOne's import progress bar (None: FiftyOne's setting).

    Returns a :class:`fiftyone.core.dataset.Dataset` with ``default_classes`` set.
    """
    import fiftyone as fo

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    name = dataset_name or root.name
    existing = _existing(name, overwrite)
    if existing is not None:
        return existing
    wanted = [s for s in _SPLITS if (root / s).is_dir()] if split is None else _splits(split)
    parts = [(root / s, [s]) for s in wanted] or [(root, None)]
    missing = [str(d) for d, _ in parts if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no split folder {missing}")
    ds = fo.Dataset(name, persistent=persistent)
    kw = dict(dataset_type=fo.types.ImageClassificationDirectoryTree, label_field=label_field,
              max_samples=max_samples, shuffle=shuffle_seed is not None, seed=shuffle_seed, progress=progress)
    for folder, tags in parts:
        ds.add_dir(dataset_dir=str(folder), tags=tags, **kw)
    ds.default_classes = sorted({c for d, _ in parts for c in (p.name for p in d.iterdir() if p.is_dir())})
    ds.save()
    return ds


def digits_split(n: int = 1797) -> dict[str, np.ndarray]:
    """The stated digits split: every fifth image (index % 5 == 4) is ``test``."""
    idx = np.arange(n)
    return {"train": idx[idx % 5 != 4], "test": idx[idx % 5 == 4]}


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (1797, 8, 8): value v in 0..16 -> round(v * 255 / 16)."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def load_digits(split=None, *, dataset_name: str | None = None, max_samples: int | None = None,
                images_dir=None, overwrite: bool = False, persistent: bool = False, progress: bool = True):
    """scikit-learn's 8x8 digits as a FiftyOne dataset with the zoo ``cifar10`` schema,
    called like ``fiftyone.zoo.load_zoo_dataset``.

    Args:
        split: ``"train"``, ``"test"``, a list of them, or None for both (the split is
            :func:`digits_split`; each sample is tagged with its split).
        dataset_name: the dataset's name; default as the zoo names its datasets:
            ``"digits"``, then ``-<split>`` when a split is given, then ``-<max_samples>``.
            An existing dataset of that name is returned unless ``overwrite=True``.
        max_samples: the first ``max_samples`` images *of each split*, as in the zoo
            (``max_samples=100`` with both splits gives 200 samples).
        images_dir: where the 8x8 PNGs go (``<images_dir>/<split>/data/``); default
            ``<fiftyone.config.default_dataset_dir>/<dataset_name>``.

    Labels are ``"0"``..``"9"`` in ``ground_truth``. Returns a
    :class:`fiftyone.core.dataset.Dataset`.
    """
    if isinstance(split, (str, os.PathLike)) and not _is_split(split):  # the former load_digits(root, ...)
        import warnings

        if images_dir is not None:
            raise TypeError("load_digits() takes the split first; pass the folder as images_dir=")
        warnings.warn(f"load_digits({str(split)!r}, ...) took a folder first; it now takes the split first, as "
                      "fiftyone.zoo.load_zoo_dataset does. Pass the folder as images_dir= (the old form goes in "
                      "the next release)", DeprecationWarning, stacklevel=2)
        split, images_dir = None, split
    splits = _splits(split)
    name = dataset_name or _zoo_name("digits", split, max_samples)
    existing = _existing(name, overwrite)
    if existing is not None:
        return existing
    all_images, all_labels = digits_uint8()
    parts = digits_split(len(all_images))
    images = {s: all_images[parts[s]][:max_samples] for s in splits}
    labels = {s: all_labels[parts[s]][:max_samples] for s in splits}
    if images_dir is None:
        import fiftyone as fo

        images_dir = Path(fo.config.default_dataset_dir) / name
    return _build(name, images, labels, DIGITS_CLASSES, Path(images_dir).expanduser(),
                  persistent=persistent, progress=progress)


def _is_split(split) -> bool:
    names = [split] if isinstance(split, str) else split
    try:
        return all(isinstance(s, str) and s in _SPLITS for s in names)
    except TypeError:
        return False


def _zoo_name(base: str, split, max_samples) -> str:
    """A default dataset name as ``fiftyone.zoo.load_zoo_dataset`` makes one."""
    name = base + ("-" + "-".join(_splits(split)) if split is not None else "")
    return name + (f"-{max_samples}" if max_samples is not None else "")
