"""The per-image part of the near-duplicate descriptor: keys and canvases.

Every image is resampled to ``work x work`` and turned into

* a **key** ``(key_dim,)``: a tiny GIST -- gradient-orientation energy of the
  standardised luma at two scales, pooled over a ``grid x grid`` layout of Gaussian
  cells, plus the pooled luma and chroma; L2-normalised. Pooling over cells a few
  pixels wide tolerates shifts and crops, so an edited copy's source is among its
  nearest keys (measured: docs/near-duplicates.md). The FiftyOne similarity
  index holds the keys.
* a **canvas** ``(C, work/2, work/2)``: the image in YCbCr (or grey), blurred and
  halved; :mod:`curate.duplicates.align` compares canvases under zooms, shifts and mirroring.

Per-image standardisation (luma to mean 0 / RMS 1, chroma centred and scaled jointly)
makes both blind to brightness, contrast, saturation and colour casts; a floor keeps
flat images from being blown up into noise.

Determinism: images are processed as a stack, but every operation is either
elementwise or a matrix product per image (numpy multiplies stacked matrices one
2-D slice at a time), so an image's key and canvas are bitwise the same in any batch
and any order (tested).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from math import sqrt

import numpy as np
from scipy.special import ndtr  # the standard normal CDF

FLOOR = 0.02  # contrast floor on the [0, 1] pixel scale (5 grey levels)
THREAD_MIN = 256  # fewest images per thread worth a thread of their own


def default_threads(cap: int = 4) -> int:
    """Threads (or worker processes) the near-duplicate search uses unless told: the cores
    this process may run on, at most ``cap`` (small arrays gain little from more)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cap, cores))


@dataclass(frozen=True)
class DescriptorSpec:
    """The settings that decide every number (stored with the dedupe run).

    Sizes are pixels of the ``work x work`` resampled image; fractions are of its side.
    """

    work: int = 32                   # every image is resampled to work x work
    grid: int = 5                    # key: pooling cells per side
    pool: float = 0.5                # key: Gaussian sigma of a cell, in cell widths
    orientations: int = 6            # key: gradient orientation bins over [0, pi)
    key_blurs: tuple = (1.0, 2.0)    # key: gradient scales (Gaussian sigma, px)
    chroma_key: float = 2.0          # key: weight of the chroma block (chosen on tuning splits, docs/near-duplicates.md)
    thumb: int = 8                   # aligned distance: thumbnail side
    blur: float = 2.0                # aligned distance: thumbnail blur (Gaussian sigma, px)
    coarse_blur: float = 2.0         # aligned distance: blur of the coarse search's thumbnails
    chroma: float = 0.35             # aligned distance: weight of the chroma channels
    max_shift: float = 3 / 32        # aligned distance: largest shift searched
    max_crop: float = 0.2            # aligned distance: largest crop searched (part of each side cut)
    scales: int = 3                  # aligned distance: coarse zoom levels, 1 .. 1/(1-max_crop)
    step: float = 3 / 32             # aligned distance: coarse translation step (at most)
    fine_step: float = 1 / 32        # aligned distance: refinement translation step

    def __post_init__(self):
        object.__setattr__(self, "key_blurs", tuple(float(b) for b in self.key_blurs))
        if self.work < 8 or self.work % 2:
            raise ValueError(f"work must be an even number >= 8, got {self.work}")
        if not (0 <= self.max_crop < 0.5 and 0 <= self.max_shift < 0.5):
            raise ValueError("max_crop and max_shift are fractions of the side in [0, 0.5)")
        if min(self.step, self.fine_step, self.blur, self.pool) <= 0 or not self.key_blurs:
            raise ValueError("step, fine_step, blur, pool and key_blurs must be positive")
        if self.scales < 1 or self.thumb < 2 or self.grid < 1 or self.orientations < 2:
            raise ValueError("need scales >= 1, thumb >= 2, grid >= 1, orientations >= 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["key_blurs"] = list(self.key_blurs)
        return d


# ------------------------------------------------------------------ linear maps ---

def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): linear interpolation between pixel centres, widened to the
    sampling step when shrinking (anti-aliasing). Rows sum to 1."""
    scale = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    width = max(1.0, scale)
    w = np.clip(1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / width, 0.0, None)
    return w / w.sum(1, keepdims=True)


def gauss_matrix(n: int, centres, sigma) -> np.ndarray:
    """(..., k, n) for centres (..., k): Gaussian weights (sigma px: a number, or an array
    that broadcasts against the centres) around each centre over pixels 0..n-1, the border
    pixels extended outwards (the mass beyond an end goes to the end pixel, as edge
    replication would). Rows sum to 1."""
    p = np.asarray(centres, dtype=np.float64)[..., None]
    sigma = np.asarray(sigma, dtype=np.float64)[..., None]
    w = np.exp(-0.5 * ((np.arange(n) - p) / sigma) ** 2)
    lo = ndtr((-0.5 - p) / sigma)
    hi = 1.0 - ndtr((n - 0.5 - p) / sigma)
    w = w / w.sum(-1, keepdims=True) * (1.0 - lo - hi)
    w[..., :1] += lo
    w[..., -1:] += hi
    return w


def cell_centres(n: int, k: int) -> np.ndarray:
    """(k,) centres of k equal cells over n pixels."""
    return (np.arange(k) + 0.5) * n / k - 0.5


def resampled(images, side: int, cache: dict | None = None, dtype=np.float64) -> np.ndarray:
    """(n, C, H, W) in [-1, 1], C = 1 or 3 -> (n, C, side, side) on [0, 1], resampled by
    :func:`resample_matrix` (``cache``: its matrices, kept between calls)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, C, H, W) with C = 1 or 3, got shape {x.shape}")
    x = (x.astype(dtype) + 1.0) / 2.0
    h, w = x.shape[2:]
    if (h, w) != (side, side):
        cache = {} if cache is None else cache
        ry = cache.setdefault((h, side, dtype), resample_matrix(h, side).astype(dtype))
        rx = cache.setdefault((w, side, dtype), resample_matrix(w, side).astype(dtype))
        x = ry @ x @ rx.T
    return x


def to_work(images, work: int, cache: dict | None = None) -> np.ndarray:
    """(n, C, H, W) in [-1, 1], C = 1 or 3 -> (n, C, work, work) float64 on [0, 1],
    colour as (Y, Cb, Cr) (ITU-R 601; Cb, Cr centred on 0)."""
    x = resampled(images, work, cache)
    if x.shape[1] == 3:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        x = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                      -0.168736 * r - 0.331264 * g + 0.5 * b,
                      0.5 * r - 0.418688 * g - 0.081312 * b], 1)
    return x


# ------------------------------------------------------------------- the keys ---

class Descriptor:
    """``describe(images)`` -> keys ``(n, key_dim(C))`` float32, canvases
    ``(n, C, work/2, work/2)`` float32, for images ``(n, C, H, W)`` in [-1, 1]."""

    def __init__(self, spec: DescriptorSpec | None = None, threads: int | None = None):
        """``threads``: images of a large stack are described in this many threads (numpy
        releases the GIL in its loops); None: :func:`default_threads`."""
        self.spec = s = spec or DescriptorSpec()
        self.threads = default_threads() if threads is None else max(1, int(threads))
        n = s.work
        self._smooth = np.stack([gauss_matrix(n, np.arange(n), b) for b in s.key_blurs])
        self._pool = gauss_matrix(n, cell_centres(n, s.grid), n / s.grid * s.pool)
        self._halve = gauss_matrix(n, 2 * np.arange(n // 2) + 0.5, 1.0)
        self._bin_width = np.pi / s.orientations
        self._bins = np.arange(s.orientations) * self._bin_width
        self._resample: dict = {}

    def key_dim(self, channels: int) -> int:
        s = self.spec
        return s.grid ** 2 * (len(s.key_blurs) * s.orientations + 1 + (2 if channels == 3 else 0))

    def describe(self, images) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        parts = min(self.threads, len(images) // THREAD_MIN)
        if parts > 1:  # bitwise the same as one stack (module docstring: batch invariance)
            import concurrent.futures as cf

            chunks = np.array_split(np.arange(len(images)), parts)
            with cf.ThreadPoolExecutor(parts) as ex:
                done = list(ex.map(lambda c: self._describe(images[c[0]:c[-1] + 1]), chunks))
            return np.concatenate([k for k, _ in done]), np.concatenate([c for _, c in done])
        return self._describe(images)

    def _describe(self, images) -> tuple[np.ndarray, np.ndarray]:
        x = to_work(images, self.spec.work, self._resample)
        canvases = self._halve @ x @ self._halve.T
        return self._keys(x).astype(np.float32), canvases.astype(np.float32)

    def _keys(self, x: np.ndarray) -> np.ndarray:
        """(n, C, work, work) -> (n, key_dim) float64."""
        s, n = self.spec, len(x)
        y = x[:, 0] - x[:, 0].mean((1, 2), keepdims=True)
        y = y / np.sqrt((y * y).mean((1, 2), keepdims=True) + FLOOR ** 2)
        b = self._smooth @ y[:, None] @ self._smooth.transpose(0, 2, 1)  # (n, blurs, work, work)
        gx = np.empty_like(b)
        gy = np.empty_like(b)
        gx[..., 1:-1] = (b[..., 2:] - b[..., :-2]) / 2
        gx[..., 0], gx[..., -1] = b[..., 1] - b[..., 0], b[..., -1] - b[..., -2]
        gy[..., 1:-1, :] = (b[..., 2:, :] - b[..., :-2, :]) / 2
        gy[..., 0, :], gy[..., -1, :] = b[..., 1, :] - b[..., 0, :], b[..., -1, :] - b[..., -2, :]
        mag = np.sqrt(gx * gx + gy * gy)
        ang = np.arctan2(gy, gx) % np.pi
        # triangular soft orientation bins, circular over [0, pi): (n, blurs, orientations, work, work)
        d = np.abs((ang[:, :, None] - self._bins[:, None, None] + np.pi / 2) % np.pi - np.pi / 2)
        energy = mag[:, :, None] * np.clip(1.0 - d / self._bin_width, 0.0, None)
        p = self._pool
        grad = (p @ energy @ p.T).reshape(n, -1)
        grad /= np.linalg.norm(grad, axis=1, keepdims=True) + 1e-12
        luma = p @ y @ p.T
        luma = (luma - luma.mean((1, 2), keepdims=True)).reshape(n, -1)
        luma /= np.linalg.norm(luma, axis=1, keepdims=True) + 1e-12
        parts = [grad, luma]
        if x.shape[1] == 3:
            c = p @ (x[:, 1:] - x[:, 1:].mean((2, 3), keepdims=True)) @ p.T
            c = c.reshape(n, -1)
            # one scale for both chroma channels, with a floor: saturation changes cancel,
            # nearly grey images stay nearly grey
            c *= s.chroma_key / (np.linalg.norm(c, axis=1, keepdims=True) + FLOOR * sqrt(c.shape[1]))
            parts.append(c)
        v = np.concatenate(parts, 1)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        # a flat image has nothing to describe: one fixed unit key (mirror-invariant), so
        # flat images are each other's nearest keys and no key is NaN
        flat = norm[:, 0] < 1e-9
        v[flat] = 1.0 / sqrt(v.shape[1])
        norm[flat] = 1.0
        return v / norm

    def mirror_permutation(self, channels: int) -> np.ndarray:
        """(key_dim,) indices: ``keys[:, perm]`` are the keys of the mirrored images
        (columns reverse, orientation bin o becomes -o). An involution."""
        s = self.spec
        g, o, nb = s.grid, s.orientations, len(s.key_blurs)
        idx = np.arange(self.key_dim(channels))
        ng = nb * o * g * g
        grad = idx[:ng].reshape(nb, o, g, g)[:, (-np.arange(o)) % o, :, ::-1]
        rest = idx[ng:].reshape(-1, g, g)[..., ::-1]
        return np.concatenate([grad.ravel(), rest.ravel()])
