"""The aligned distance of two canvases: how far apart two images are after the best
zoom, shift and mirror of one of them onto the other.

Each canvas ``(C, h, h)`` becomes small thumbnails ``(C, t, t)`` (Gaussian low-pass,
``DescriptorSpec.blur``) of *windows* of the image: a window is the image zoomed by
``z`` (1 .. 1/(1 - max_crop): a crop of up to ``max_crop`` of each side, resized back)
and shifted by up to ``max_shift`` beyond what the zoom allows. A thumbnail is
standardised (luma to RMS 1; chroma decorrelated from luma, so a colour cast that
scales R, G, B differently cancels, then scaled jointly and weighted by ``chroma``) and
L2-normalised into a vector ``(C*t*t,)``.

``distance(a, b) = min over windows w of a (and of mirrored a) of |thumb_w(a) - thumb(b)|``,
taken in both directions (a crop of b, or b a crop of a). Unit vectors, so the distance
lies in [0, 2]; identical images are at exactly 0.

The search runs on a coarse grid (``scales`` zooms, ``step`` shifts) for every
candidate pair; pairs whose coarse distance is within ``refine`` of the threshold are
then refined by a local search on the fine grid (``fine_step``, half the zoom step)
around each direction's best coarse window. A refined distance is never larger than
the coarse one; distances beyond the refinement band are upper bounds.
"""
from __future__ import annotations

import numpy as np

from curate.duplicates.descriptor import FLOOR, DescriptorSpec, cell_centres, gauss_matrix


#: How a colour thumbnail is standardised (``Aligner(colour=...)``): ``"ycc"`` (the default:
#: luma to RMS 1, chroma decorrelated from luma and scaled jointly); ``"rgb"`` (each of R, G,
#: B to mean 0 / RMS 1 on its own: blind to any per-channel affine colour map); ``"y_rgb"``
#: (the standardised luma plus the ``"rgb"`` block weighted by ``chroma``). Prototypes
#: measured on the real pairs' tuning half (curate/bench/data/README.md).
COLOURS = ("ycc", "rgb", "y_rgb")


class Aligner:
    """Thumbnails of canvases and aligned distances for a :class:`DescriptorSpec`."""

    def __init__(self, spec: DescriptorSpec | None = None, colour: str = "ycc"):
        if colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
        self.colour = colour
        self.spec = s = spec or DescriptorSpec()
        self.h = h = s.work // 2
        self.t = s.thumb
        self.zmax = 1.0 / (1.0 - s.max_crop)
        zooms = np.linspace(1.0, self.zmax, s.scales) if s.scales > 1 else np.ones(1)
        self.dz = (zooms[1] - zooms[0]) / 2 if len(zooms) > 1 else 0.0
        self._blocks, params = [], []  # per zoom: (maps (k*t, h), k)
        for z in zooms:
            # an odd number of evenly spaced shifts from -reach to reach: the ends of
            # the range and no shift at all are on the grid, the spacing <= step
            m = int(np.ceil(self.reach(z) / (s.step * h) - 1e-9))
            offs = np.linspace(-self.reach(z), self.reach(z), 2 * m + 1)
            self._blocks.append((np.concatenate([self._map(z, o, s.coarse_blur) for o in offs]), len(offs)))
            params += [(z, tx, ty) for ty in offs for tx in offs]  # row-major: y outer
        self._blocks32 = [(r.astype(np.float32), k) for r, k in self._blocks]
        self.params = np.array(params)  # (n_windows, 3): zoom, x shift, y shift (canvas px)
        self.n_windows = len(params)
        self._fine_maps: dict = {}  # (zoom, shift) -> (t, h), see _fine_map
        self._identity = self._map(1.0, 0.0)
        self._identity_coarse = self._map(1.0, 0.0, s.coarse_blur)

    # -- thumbnails -------------------------------------------------------------
    def reach(self, z: float) -> float:
        """Largest shift (canvas px) of a window at zoom z."""
        return self.h / 2 * (1 - 1 / z) + self.spec.max_shift * self.h

    def _map(self, z: float, off: float, blur: float | None = None) -> np.ndarray:
        """(t, h): one side of the window at zoom z shifted by off, low-passed."""
        c = (self.h - 1) / 2
        return gauss_matrix(self.h, c + (cell_centres(self.h, self.t) - c) / z + off,
                            (blur or self.spec.blur) / 2 / z)

    def _maps3(self, z: float, offs) -> np.ndarray:
        """(len(offs) * t, h): :meth:`_map` for several shifts at one zoom, stacked."""
        return np.concatenate([self._fine_map(z, o) for o in offs])

    def _fine_map(self, z: float, off: float) -> np.ndarray:
        """(t, h): :meth:`_map` at the fine blur, kept: the local search revisits the
        same lattice of zooms and shifts for every pair."""
        key = (round(z, 9), round(off, 9))
        m = self._fine_maps.get(key)
        if m is None:
            if len(self._fine_maps) > 100_000:  # bounded, whatever the lattice
                self._fine_maps.clear()
            m = self._fine_maps[key] = self._map(z, off)
        return m

    def normalise(self, th: np.ndarray) -> np.ndarray:
        """thumbnails (..., C, t, t) -> unit vectors (..., C*t*t); a flat one stays 0."""
        lead, ch = th.shape[:-3], th.shape[-3]
        if ch == 3 and self.colour != "ycc":
            return self._normalise_rgb(th)
        v = th.reshape(lead + (ch, -1))
        floor2 = np.asarray(FLOOR ** 2, dtype=v.dtype)
        v = v - v.mean(-1, keepdims=True)
        y = v[..., :1, :]
        yy = (y * y).mean(-1, keepdims=True)  # (..., 1, 1)
        # squared length after scaling, known in closed form: no second pass
        norm2 = yy / (yy + floor2)
        scales = [1 / np.sqrt(yy + floor2)]
        parts = [y]
        if ch == 3:
            c = v[..., 1:, :]
            # what luma predicts goes: a colour cast that scales R, G, B differently cancels
            c = c - (c * y).mean(-1, keepdims=True) / (yy + floor2) * y
            cc = (c * c).mean((-2, -1), keepdims=True)
            w = np.asarray(self.spec.chroma, dtype=v.dtype)
            norm2 = norm2 + 2 * w * w * cc / (cc + floor2)
            scales.append(w / np.sqrt(cc + floor2))
            parts.append(c)
        # a flat thumbnail (contrast far below one grey level) is the zero vector, not
        # rounding noise blown up to unit length
        inv = np.where(norm2 > 1e-8, 1 / np.sqrt(np.maximum(norm2, 1e-8) * v.shape[-1]), 0).astype(v.dtype)
        out = np.concatenate([p * (sc * inv) for p, sc in zip(parts, scales)], -2)
        return out.reshape(lead + (-1,))

    def _normalise_rgb(self, th: np.ndarray) -> np.ndarray:
        """:meth:`normalise` for ``colour`` "rgb" / "y_rgb": (..., 3, t, t) YCbCr -> unit vectors."""
        lead = th.shape[:-3]
        v = th.reshape(lead + (3, -1))
        y, cb, cr = v[..., 0, :], v[..., 1, :], v[..., 2, :]
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -2)
        floor2 = np.asarray(FLOOR ** 2, dtype=v.dtype)

        def standard(x):  # each row to mean 0, RMS 1 (a flat row stays near 0)
            x = x - x.mean(-1, keepdims=True)
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + floor2)

        parts = [standard(rgb)]
        if self.colour == "y_rgb":
            parts = [standard(v[..., :1, :]), np.asarray(self.spec.chroma, dtype=v.dtype) * parts[0]]
        out = np.concatenate(parts, -2).reshape(lead + (-1,))
        norm = np.linalg.norm(out, axis=-1, keepdims=True)
        return np.where(norm > 1e-4, out / np.maximum(norm, 1e-4), 0).astype(v.dtype)

    def base(self, canvases: np.ndarray, coarse: bool = False) -> np.ndarray:
        """canvases (n, C, h, h) -> whole-image thumbnails (n, C*t*t) float64 (at the
        coarse search's blur with ``coarse``)."""
        g = self._identity_coarse if coarse else self._identity
        return self.normalise(g @ np.asarray(canvases, dtype=np.float64) @ g.T)

    def windows(self, canvases: np.ndarray, mirror: bool) -> np.ndarray:
        """canvases (n, C, h, h) -> coarse-grid thumbnails (n, W, C*t*t) float64 with
        W = n_windows, or 2 * n_windows with ``mirror`` (the mirrored canvas's follow)."""
        # float32: these only rank windows; refine() recomputes the winners in float64
        c = np.asarray(canvases, dtype=np.float32)
        if mirror:
            c = np.concatenate([c, c[..., ::-1]], 1)  # (n, 2C, h, h)
        n, ch, t = len(c), c.shape[1], self.t
        out = []
        for r, k in self._blocks32:
            w = r @ c @ r.T  # (n, ch, k*t, k*t)
            w = w.reshape(n, ch, k, t, k, t).transpose(0, 2, 4, 1, 3, 5)  # (n, ky, kx, ch, t, t)
            out.append(w.reshape(n, k * k, ch, t, t))
        w = np.concatenate(out, 1)  # (n, W, ch, t, t)
        if mirror:
            half = ch // 2
            w = np.concatenate([w[:, :, :half], w[:, :, half:]], 1)
        return self.normalise(w)

    # -- refinement -------------------------------------------------------------
    def refine(self, canvas: np.ndarray, target: np.ndarray, start, max_steps: int = 6):
        """Local search from ``start = (flip, zoom, x shift, y shift)`` for the window of
        ``canvas`` (C, h, h) closest to ``target`` (C*t*t,). Returns (distance, window).
        The search written for one pair; the verifier runs it as :meth:`refine_many`, which
        the tests hold equal to this."""
        flip, z, tx, ty = start
        c = np.asarray(canvas, dtype=np.float64)
        if flip:
            c = c[..., ::-1]
        fs = self.spec.fine_step * self.h
        best = (np.inf, (flip, z, tx, ty))
        for step, dz in ((fs, self.dz), (fs / 2, self.dz / 2)):
            for _ in range(max_steps):
                zs = sorted({min(max(z + e * dz, 1.0), self.zmax) for e in (-1, 0, 1)})
                cands = []
                for zz in zs:
                    lim = self.reach(zz) + fs
                    ys = [min(max(ty + e * step, -lim), lim) for e in (-1, 0, 1)]
                    xs = [min(max(tx + e * step, -lim), lim) for e in (-1, 0, 1)]
                    ry, rx = self._maps3(zz, ys), self._maps3(zz, xs)
                    w = (ry @ c @ rx.T).reshape(c.shape[0], 3, self.t, 3, self.t).transpose(1, 3, 0, 2, 4)
                    v = self.normalise(w).reshape(9, -1)
                    d = np.linalg.norm(v - target, axis=1)
                    cands += [(float(d[i * 3 + j]), (flip, zz, xs[j], ys[i])) for i in range(3) for j in range(3)]
                d, (_, z2, tx2, ty2) = min(cands, key=lambda u: u[0])
                if d >= best[0]:
                    break
                best = (d, (flip, z2, tx2, ty2))
                z, tx, ty = z2, tx2, ty2
        return best

    def refine_many(self, canvases: np.ndarray, targets: np.ndarray, starts: np.ndarray, max_steps: int = 6,
                    chunk: int = 512) -> np.ndarray:
        """:meth:`refine` of P problems in lockstep, vectorised over them: canvases (P, C, h, h),
        targets (P, C*t*t), starts (P, 4) rows (flip, zoom, x shift, y shift) -> (P,) float64
        distances. The same search (candidates in the same order, the first best kept, a
        problem stops when a step does not improve it); the numbers agree with the loop's to
        rounding (its maps are cached by rounded zoom and shift, these computed directly)."""
        out = np.empty(len(canvases))
        for s in range(0, len(canvases), chunk):
            out[s:s + chunk] = self._refine_chunk(canvases[s:s + chunk], targets[s:s + chunk],
                                                  np.asarray(starts[s:s + chunk], dtype=np.float64), max_steps)
        return out

    def _refine_chunk(self, canvases, targets, starts, max_steps) -> np.ndarray:
        P = len(canvases)
        c = np.array(canvases, dtype=np.float64)
        flip = starts[:, 0] != 0
        c[flip] = c[flip][..., ::-1]
        z, tx, ty = starts[:, 1].copy(), starts[:, 2].copy(), starts[:, 3].copy()
        targets = np.asarray(targets, dtype=np.float64)
        best = np.full(P, np.inf)
        fs = self.spec.fine_step * self.h
        e = np.array([-1.0, 0.0, 1.0])
        t, ch = self.t, c.shape[1]
        for step, dz in ((fs, self.dz), (fs / 2, self.dz / 2)):
            active = np.arange(P)
            for _ in range(max_steps):
                if not len(active):
                    break
                A = len(active)
                zc = np.minimum(np.maximum(z[active, None] + e * dz, 1.0), self.zmax)  # (A, 3) ascending
                valid = np.ones((A, 3), bool)  # the loop's set of zooms: a repeated zoom once
                valid[:, 1:] = zc[:, 1:] != zc[:, :-1]
                lim = (self.reach(zc) + fs)[..., None]  # (A, 3, 1)
                ys = np.minimum(np.maximum(ty[active, None, None] + e * step, -lim), lim)  # (A, 3, 3)
                xs = np.minimum(np.maximum(tx[active, None, None] + e * step, -lim), lim)
                ry, rx = self._maps_at(zc, ys), self._maps_at(zc, xs)  # (A, 3, 3t, h)
                w = ry[:, :, None] @ c[active, None] @ np.swapaxes(rx, -1, -2)[:, :, None]  # (A, 3, C, 3t, 3t)
                w = w.reshape(A, 3, ch, 3, t, 3, t).transpose(0, 1, 3, 5, 2, 4, 6)  # (A, zoom, y, x, C, t, t)
                d = np.linalg.norm(self.normalise(w) - targets[active, None, None, None, :], axis=-1)
                d = np.where(valid[:, :, None, None], d, np.inf).reshape(A, 27)
                k = d.argmin(1)  # the first of equals, as min() over the loop's list
                dmin = d[np.arange(A), k]
                better = dmin < best[active]
                zi, yi, xi = k // 9, (k // 3) % 3, k % 3
                ar = np.arange(A)
                won = active[better]
                best[won] = dmin[better]
                z[won] = zc[ar, zi][better]
                ty[won] = ys[ar, zi, yi][better]
                tx[won] = xs[ar, zi, xi][better]
                active = won
        return best

    def _maps_at(self, zooms: np.ndarray, offs: np.ndarray) -> np.ndarray:
        """zooms (A, Z), offs (A, Z, K) -> (A, Z, K*t, h): :meth:`_map` (fine blur) of each
        zoom and shift, the K shifts of one zoom stacked as :meth:`_maps3` stacks them."""
        h, mid = self.h, (self.h - 1) / 2
        z = zooms[..., None, None]  # (A, Z, 1, 1)
        centres = mid + (cell_centres(h, self.t) - mid) / z + offs[..., None]  # (A, Z, K, t), as _map
        return gauss_matrix(h, centres, self.spec.blur / 2 / z).reshape(zooms.shape + (-1, h))

