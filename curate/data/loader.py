"""Turn any FiftyOne collection into batches of model-range tensors.

Images are decoded in background threads (PIL releases the GIL while decoding) a
few batches ahead of the consumer. The size and channel policy is explicit:

* ``channels``: 1 (grayscale, PIL mode ``L``), 3 (``RGB``), or None to take the
  channel count of the first readable image (grey modes count as 1). Images in
  another mode are converted with PIL's standard conversion: alpha is dropped (not
  composited), palettes are expanded, CMYK uses PIL's formula, grey is repeated
  into RGB, RGB becomes grey by ITU-R 601 luma. 16-bit (and 32-bit integer)
  images are scaled to 8 bits (v * 255 / 65535, rounded); floating-point images
  (mode F) are refused.
* ``size``: ``(H, W)``, or None to take the first readable image's size. An image
  of another size is a per-sample failure unless ``resize=True``, when it is
  resized with bicubic filtering.

A file that cannot be read (missing, empty, truncated, not an image, a header
claiming more pixels than Pillow's decompression-bomb limit) or does not fit the
policy never stops the stream: it is reported in ``Batch.failed`` (sample id ->
message) and the other images go on.
"""
from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from curate.data.tensors import to_model_range

_MODES = {1: "L", 3: "RGB"}


@dataclass
class Batch:
    """``ids`` (b,) sample ids of the rows of ``images`` (b, C, H, W) float32 in [-1, 1];
    ``failed`` maps ids that could not be used to a message."""

    ids: list[str]
    images: torch.Tensor
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class ImagePolicy:
    """How images become tensors of one shape; see the module docstring."""

    size: tuple[int, int] | None = None
    channels: int | None = None
    resize: bool = False

    def __post_init__(self):
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {self.channels!r}")
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
            if min(self.size) < 1:
                raise ValueError(f"size must be positive (H, W), got {self.size}")


def _open(path: str):
    """The image with only its header read (size and mode known, pixels not decoded).

    Pillow refuses files whose header claims more than twice ``Image.MAX_IMAGE_PIXELS``
    (a decompression bomb) here, before any memory is spent."""
    from PIL import Image

    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError("empty file (0 bytes)")
    import io

    return Image.open(io.BytesIO(data))


def _channels_of(im) -> int:
    """1 for grey modes (with or without alpha, any bit depth), else 3."""
    return 1 if set(im.getbands()) - {"A"} <= {"L", "1", "I", "F"} else 3


def _fix_policy(policy: ImagePolicy, paths: list[str]) -> ImagePolicy:
    """Fill ``size``/``channels`` left as None from the first readable image."""
    if policy.size is not None and policy.channels is not None:
        return policy
    for p in paths:
        try:
            im = _open(p)
        except Exception:
            continue
        channels = policy.channels or _channels_of(im)
        size = policy.size or (im.height, im.width)
        return ImagePolicy(size=size, channels=channels, resize=policy.resize)
    return policy


def _to_8bit(im):
    """Integer images of more than 8 bits (PIL modes ``I;16*`` and ``I``) -> ``L``,
    scaling 0..65535 to 0..255 (Pillow's own conversion would clip at 255)."""
    from PIL import Image

    if im.mode == "F":
        raise ValueError("floating-point image (PIL mode F) has no standard value range; "
                         "save it as 8- or 16-bit")
    if im.mode == "I" or im.mode.startswith("I;16"):
        arr = np.clip(np.asarray(im, dtype=np.float64), 0, 65535) * (255.0 / 65535.0)
        return Image.fromarray(np.rint(arr).astype(np.uint8), "L")
    return im


def _read(path: str, policy: ImagePolicy) -> np.ndarray:
    """One file -> uint8 (C, H, W) by the policy; raises ValueError/OSError with a reason.

    The size is checked from the header before decoding, so a huge image of the
    wrong size costs nothing."""
    from PIL import Image

    im = _open(path)
    h, w = policy.size
    if (im.height, im.width) != (h, w) and not policy.resize:
        raise ValueError(
            f"image is {im.height}x{im.width} but this run uses {h}x{w}; "
            "pass size=(H, W) with resize=True to resize"
        )
    im.load()  # decodes; a truncated file raises OSError here
    im = _to_8bit(im)
    mode = _MODES[policy.channels]
    if im.mode != mode:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # palette transparency: go through RGBA, then drop alpha
        im = im.convert(mode)
    if (im.height, im.width) != (h, w):
        im = im.resize((w, h), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _load_batch(ids, paths, policy: ImagePolicy) -> Batch:
    ok_ids, arrays, failed = [], [], {}
    for sid, path in zip(ids, paths):
        try:
            arrays.append(_read(path, policy))
            ok_ids.append(sid)
        except Exception as e:  # any unreadable file is a per-sample failure
            failed[sid] = f"{type(e).__name__}: {e}"
    if arrays:
        images = to_model_range(np.stack(arrays))
    else:
        c = policy.channels or 1
        h, w = policy.size or (0, 0)
        images = torch.empty((0, c, h, w), dtype=torch.float32)
    return Batch(ok_ids, images, failed)


def resolve_policy(samples, *, size=None, channels=None, resize: bool = False) -> ImagePolicy:
    """The policy with ``size``/``channels`` left as None taken from the first readable
    image of ``samples`` (so a resumed run can reuse exactly the same policy)."""
    policy = ImagePolicy(size=size, channels=channels, resize=resize)
    if policy.size is not None and policy.channels is not None:
        return policy
    for path in samples.values("filepath"):
        fixed = _fix_policy(policy, [path])
        if fixed.size is not None and fixed.channels is not None:
            return fixed
    raise ValueError("no readable image in the collection to take the size/channels from; "
                     "pass size=(H, W) and channels=")


def iter_batches(samples, *, batch_size: int = 64, size=None, channels: int | None = None,
                 resize: bool = False, num_workers: int = 2, prefetch: int | None = None
                 ) -> Iterator[Batch]:
    """Yield :class:`Batch` es over ``samples`` (any FiftyOne collection) in its order.

    Args:
        samples: a FiftyOne dataset or view of images.
        batch_size: samples per batch (failed ones are dropped from ``images``).
        size, channels, resize: the :class:`ImagePolicy`.
        num_workers: decoding threads; 0 decodes in the calling thread.
        prefetch: batches decoded ahead (default ``2 * num_workers``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids, paths = samples.values(["id", "filepath"])
    policy = _fix_policy(ImagePolicy(size=size, channels=channels, resize=resize), paths)
    if policy.size is None:  # nothing readable: every sample fails
        policy = ImagePolicy(size=(1, 1), channels=policy.channels or 1, resize=False)
    chunks = [(ids[i:i + batch_size], paths[i:i + batch_size]) for i in range(0, len(ids), batch_size)]
    if num_workers <= 0:
        for cid, cpath in chunks:
            yield _load_batch(cid, cpath, policy)
        return
    ahead = prefetch or 2 * num_workers
    with cf.ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="curate-load") as pool:
        pending: deque = deque()
        it = iter(chunks)
        for cid, cpath in it:
            pending.append(pool.submit(_load_batch, cid, cpath, policy))
            if len(pending) >= ahead:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_load_batch, nxt[0], nxt[1], policy))
            yield batch


def load_images(samples, **kwargs) -> tuple[list[str], torch.Tensor, dict[str, str]]:
    """All of ``samples`` at once: ids (n,), images (n, C, H, W) in [-1, 1], failures."""
    ids, parts, failed = [], [], {}
    for b in iter_batches(samples, **kwargs):
        ids += b.ids
        parts.append(b.images)
        failed.update(b.failed)
    images = torch.cat(parts) if parts else torch.empty((0, 1, 1, 1))
    return ids, images, failed
