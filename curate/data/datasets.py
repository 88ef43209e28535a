"""FiftyOne datasets with the schema of FiftyOne's zoo ``cifar10``.

Every dataset built here has PNG files on disk, a ``ground_truth``
:class:`fiftyone.core.labels.Classification`, a ``train`` or ``test`` tag on each
sample and ``dataset.default_classes``, so code written against
``foz.load_zoo_dataset("cifar10")`` works unchanged on them.

* :func:`load_cifar10` reads a local ``cifar-10-batches-py`` folder (downloading it
  with torchvision only when ``download=True``). The batches are Python pickles;
  they are read with a restricted unpickler that can only rebuild plain containers
  and numpy arrays, so a tampered file cannot run code.
* :func:`load_digits` writes scikit-learn's real 8x8 digits as PNGs (no download).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
DIGITS_CLASSES = [str(i) for i in range(10)]
_SPLITS = ("train", "test")
_CIFAR_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


# --------------------------------------------------------------------- safe pickles
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes, str, numbers and numpy arrays; nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 spell bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays and lists"
        )


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (n, 32, 32, 3) uint8 and labels (n,) int64."""
    with open(path, "rb") as f:
        raw = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a dict)")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    if "data" not in d or ("labels" not in d and "fine_labels" not in d):
        raise ValueError(f"{path}: not a CIFAR-10 batch (keys {sorted(d)})")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: data has shape {data.shape}, labels {labels.shape}")
    # Rows hold 1024 red, then green, then blue values of a 32x32 image.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _find_cifar_dir(root: Path) -> Path | None:
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").is_file() or (cand / "data_batch_1").is_file():
            return cand
    return None


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

    from curate import _progress

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
                 images_dir=None, max_samples: int | None = None, overwrite: bool = False,
                 persistent: bool = False, progress: bool = True):
    """CIFAR-10 as a FiftyOne dataset with the zoo ``cifar10`` schema.

    Args:
        root: a folder holding ``cifar-10-batches-py`` (or that folder itself).
        split: ``"train"``, ``"test"``, a list of them, or None for both.
        dataset_name: defaults to ``"cifar10-<split>"``. An existing dataset of that
            name is returned as is unless ``overwrite=True``.
        download: fetch the archive with torchvision when the folder is missing
            (needs internet; off by default so nothing is fetched silently).
        images_dir: where the PNGs go; defaults to ``<root>/cifar10-png``.
        max_samples: keep the first ``max_samples`` images of each split.
    Returns:
        a :class:`fiftyone.core.dataset.Dataset` of 32x32 RGB PNGs.
    """
    splits = _splits(split)
    name = dataset_name or "cifar10-" + ("-".join(splits) if split is not None else "all")
    existing = _existing(name, overwrite)
    if existing is not None:
        return existing
    root = Path(root).expanduser()
    folder = _find_cifar_dir(root)
    if folder is None:
        if not download:
            raise FileNotFoundError(
                f"no cifar-10-batches-py under {root}; copy it there or pass download=True "
                "(needs internet)"
            )
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        folder = _find_cifar_dir(root)
        if folder is None:  # pragma: no cover - torchvision layout changed
            raise FileNotFoundError(f"torchvision download did not create {root}/cifar-10-batches-py")
    classes = list(CIFAR10_CLASSES)
    meta = folder / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            m = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        names = m.get(b"label_names") or m.get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    images, labels = {}, {}
    for s in splits:
        missing = [f for f in _CIFAR_FILES[s] if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {missing} needed for split {s!r}")
        parts = [read_cifar_batch(folder / f) for f in _CIFAR_FILES[s]]
        images[s] = np.concatenate([p[0] for p in parts])[:max_samples]
        labels[s] = np.concatenate([p[1] for p in parts])[:max_samples]
    out = Path(images_dir) if images_dir is not None else root / "cifar10-png"
    return _build(name, images, labels, classes, out, persistent=persistent, progress=progress)


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


def load_digits(root, split=None, *, dataset_name: str | None = None, max_samples: int | None = None,
                overwrite: bool = False, persistent: bool = False, progress: bool = True):
    """scikit-learn's 8x8 digits as a FiftyOne dataset with the zoo ``cifar10`` schema.

    PNGs (8x8 grayscale) go under ``<root>/<split>/data/``; labels are ``"0"``..``"9"``;
    the split is :func:`digits_split`. ``max_samples`` keeps the first images of each
    split (for small tests). An existing dataset named ``dataset_name`` (default
    ``"digits-<split>"``) is returned unless ``overwrite=True``.
    """
    splits = _splits(split)
    name = dataset_name or "digits-" + ("-".join(splits) if split is not None else "all")
    existing = _existing(name, overwrite)
    if existing is not None:
        return existing
    all_images, all_labels = digits_uint8()
    parts = digits_split(len(all_images))
    images = {s: all_images[parts[s]][:max_samples] for s in splits}
    labels = {s: all_labels[parts[s]][:max_samples] for s in splits}
    return _build(name, images, labels, DIGITS_CLASSES, Path(root).expanduser(),
                  persistent=persistent, progress=progress)
