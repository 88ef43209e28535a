"""Training images: read them from a source (digits, a tensor file, a folder), check them,
and fingerprint them so that a resumed training run sees the same data. Never unpickles."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from curate.models import checkpoint as ckpt

def check_training_images(images: torch.Tensor) -> torch.Tensor:
    """Validate training images: float (n, C, H, W) in [-1, 1], finite. Returns a float32 copy-free view."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"training images must be a tensor of shape (n, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if images.shape[0] < 1:
        raise ValueError("no training images")
    if not images.is_floating_point():
        raise ValueError(f"training images must be float in [-1, 1], got {images.dtype} "
                         "(use curate.data.tensors.to_model_range for uint8)")
    if not torch.isfinite(images).all():
        raise ValueError("training images contain NaN or Inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"training images must lie in [-1, 1], found values in [{lo:.3g}, {hi:.3g}]")
    return images.float()


def fingerprint(images: torch.Tensor) -> str:
    """sha256 of the float32 image bytes: a resumed run must see the same data."""
    arr = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(str(tuple(arr.shape)).encode() + arr.tobytes()).hexdigest()


def read_training_images(source: str, *, n: int | None = None, subset_seed: int = 0, image_size: int | None = None,
                channels: int | None = None) -> torch.Tensor:
    """Training images (n, C, H, W) float32 in [-1, 1] from ``source``:

    * ``digits`` -- scikit-learn's 1,797 8x8 digits;
    * a ``.safetensors`` file (the tensor ``images`` or its only tensor; uint8 or float in [-1, 1]);
    * a ``.npy`` file (no pickles; uint8 NHWC / NCHW or float NCHW in [-1, 1]);
    * a folder of images (png, jpg, bmp, webp), converted to ``channels`` (default: 1 if
      the first image is greyscale else 3) and resized to ``image_size`` if given.

    ``n`` takes a random subset (seeded by ``subset_seed``).
    """
    import numpy as np

    from curate.data.tensors import digits_images, to_model_range

    path = Path(source)
    if source == "digits":
        x = digits_images()
    elif path.is_dir():
        x = _folder_images(path, image_size=image_size, channels=channels)
    elif path.is_file():
        ckpt.refuse_pickle(path)
        kind = ckpt.sniff(path)
        if kind == "safetensors":
            tensors, _ = ckpt.read_safetensors(path)
            if "images" in tensors:
                x = tensors["images"]
            elif len(tensors) == 1:
                x = next(iter(tensors.values()))
            else:
                raise ValueError(f"{path} holds several tensors {sorted(tensors)}; name the training set 'images'")
        elif kind == "numpy":
            try:
                x = torch.from_numpy(np.load(path, allow_pickle=False))
            except ValueError as e:
                raise ValueError(f"{path}: {e} (curate never loads pickled arrays)") from None
        else:
            raise ValueError(f"{path} is not a safetensors or .npy file ({kind})")
        if x.dim() == 4 and x.dtype == torch.uint8 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.dtype == torch.uint8:
            x = to_model_range(x)
    else:
        raise FileNotFoundError(f"training data {source!r}: not 'digits', a file or a folder")
    x = check_training_images(x)
    if n is not None:
        if not 1 <= n <= x.shape[0]:
            raise ValueError(f"n={n} but the data has {x.shape[0]} images")
        g = torch.Generator().manual_seed(subset_seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:n]]
    return x.contiguous()


def _folder_images(folder: Path, *, image_size=None, channels=None) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"})
    if not files:
        raise ValueError(f"{folder} holds no images (png, jpg, bmp, webp)")
    arrays = []
    for p in files:
        with Image.open(p) as im:
            if channels is None:
                channels = 1 if im.mode in ("L", "1", "I;16", "I") else 3
            im = im.convert("L" if channels == 1 else "RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BICUBIC)
            arrays.append(np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images in {folder} have different sizes {sorted(sizes)}; pass image_size to resize")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"images must be square, got {tuple(x.shape[-2:])}; pass image_size")
    return x.float() / 127.5 - 1.0


def load_images(*args, **kwargs) -> torch.Tensor:
    """Deprecated name of :func:`read_training_images` (kept for one release)."""
    import warnings

    warnings.warn("curate.training.load_images is now read_training_images (curate.data.loader.load_images "
                  "reads a FiftyOne collection)", DeprecationWarning, stacklevel=2)
    return read_training_images(*args, **kwargs)
