"""CIFAR-10 from a local copy: the official python batches or an image tree.

Two layouts are read, in the official order (image i of a split is "CIFAR-10 image i"):

* ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``): Python pickles, read
  with a restricted unpickler that can only rebuild plain containers and numpy arrays;
* an image tree in FiftyOne's ``ImageClassificationDirectoryTree`` layout,
  ``<root>/<split>/<class>/<file>``, with an ``order.csv`` (``split,index,label,path``)
  that names each file's index in the official batches (without it, files are taken in
  sorted order).

Only the images asked for are decoded, so a 500-image subset of a JPEG tree costs 500
decodes, not 50,000.
"""
from __future__ import annotations

import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = ("train", "test")
BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


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


def safe_load(f):
    """A CIFAR pickle from an open binary file, restricted to arrays and containers."""
    return _NumpyOnlyUnpickler(f, encoding="bytes").load()


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (n, 32, 32, 3) uint8 and labels (n,) int64."""
    with open(path, "rb") as f:
        raw = safe_load(io.BytesIO(f.read()))
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


def find_batches(root: Path) -> Path | None:
    """The folder holding the python batches under ``root`` (or ``root`` itself), or None."""
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").is_file() or (cand / "data_batch_1").is_file():
            return cand
    return None


def is_image_tree(root: Path) -> bool:
    """True when ``root/<split>/<class>/`` folders hold images."""
    return any((root / s).is_dir() and any(p.is_dir() for p in (root / s).iterdir()) for s in SPLITS)


def tree_files(root: Path, split: str) -> list[tuple[int, str, Path]]:
    """(official index, class, file) of a split of an image tree, in official order.

    ``order.csv`` gives the indices; without it the files are numbered in sorted order."""
    order = root / "order.csv"
    if order.is_file():
        with open(order, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == split]
        out = [(int(r["index"]), Path(r["path"]).parent.name, root / r["path"]) for r in rows]
        return sorted(out)
    files = sorted(p for p in (root / split).glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [(i, p.parent.name, p) for i, p in enumerate(files)]


def read_split(root: str | os.PathLike, split: str, indices=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n, H, W, 3) uint8, labels (n,) and official indices (n,) of one split.

    ``indices`` (official indices) selects images; default: the whole split. Reads the
    python batches when ``root`` holds them, else an image tree (decoding only the
    selected files)."""
    from PIL import Image

    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    batches = find_batches(root)
    if batches is not None:
        missing = [f for f in BATCH_FILES[split] if not (batches / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{batches} lacks {missing} needed for split {split!r}")
        parts = [read_cifar_batch(batches / f) for f in BATCH_FILES[split]]
        images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        index = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
        return images[index], labels[index], index
    if not is_image_tree(root):
        raise FileNotFoundError(f"no CIFAR-10 under {root}: neither cifar-10-batches-py nor an image tree "
                                f"<root>/{{train,test}}/<class>/")
    files = tree_files(root, split)
    by_index = {i: (c, p) for i, c, p in files}
    index = np.array([i for i, _, _ in files] if indices is None else list(indices), dtype=np.int64)
    unknown = [int(i) for i in index if int(i) not in by_index]
    if unknown:
        raise ValueError(f"split {split!r} of {root} has no images with indices {unknown[:5]}")
    images = np.stack([np.asarray(Image.open(by_index[int(i)][1]).convert("RGB")) for i in index])
    labels = np.array([CLASSES.index(by_index[int(i)][0]) if by_index[int(i)][0] in CLASSES else -1
                       for i in index], dtype=np.int64)
    return images, labels, index


def split_size(root: str | os.PathLike, split: str) -> int:
    """Images in a split of the local copy (without decoding any)."""
    root = Path(root).expanduser()
    if find_batches(root) is not None:
        return len(read_split(root, split)[0])
    return len(tree_files(root, split))


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W, C) uint8 -> (n, size, size, C): PIL's box filter (an area average)."""
    from PIL import Image

    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BOX)) for im in images])


def load_tensor(root: str | os.PathLike, split: str = "train", indices=None, *, image_size: int | None = None):
    """Images (n, 3, S, S) float32 in [-1, 1], labels (n,) and official indices (n,) of a
    split (see :func:`read_split`), resized to ``image_size`` when given."""
    import torch

    images, labels, index = read_split(root, split, indices)
    if image_size is not None:
        images = resize(images, int(image_size))
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(), torch.from_numpy(labels), torch.from_numpy(np.asarray(index))
