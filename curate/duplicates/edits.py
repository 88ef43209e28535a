"""The everyday edits a near-duplicate goes through, with their ranges (the benchmark's
planted copies and the tests' edge cases). Images are uint8 ``(H, W, 3)`` or ``(H, W)``.

========================  ==============================================================
kind                      edit (range)
========================  ==============================================================
``crop``                  keep ``side`` (0.8-1.0) of the width and of the height at a
                          random position, resize back (bicubic): up to 20 % cut per side
``shift``                 translate by (dx, dy), each -3..3 px of a 32 px side (not both
                          0; scaled to the image side), borders filled by edge replication
``mirror``                left-right flip
``brightness_contrast``   PIL brightness then contrast, factors 0.8-1.2 each
``colour``                per-channel gains 0.9-1.1 (a colour cast), then PIL saturation
                          0.8-1.2
``reencode``              JPEG at quality 30-90 (4:2:0)
========================  ==============================================================

A copy gets one to three different kinds, applied in the order above (geometry,
then photometry, then the re-encode that publishing ends with).
"""
from __future__ import annotations

import io

import numpy as np

KINDS = ("crop", "shift", "mirror", "brightness_contrast", "colour", "reencode")
CROP_SIDE = (0.8, 1.0)
SHIFT_PX = 3          # at a 32 px side
FACTOR = (0.8, 1.2)   # brightness, contrast, saturation
GAIN = (0.9, 1.1)
QUALITY = (30, 90)


def draw(kind: str, rng: np.random.Generator) -> dict:
    """Random parameters of one edit of ``kind`` within its range."""
    if kind == "crop":
        side = float(rng.uniform(*CROP_SIDE))
        return {"side": side, "x0": float(rng.uniform(0, 1 - side)), "y0": float(rng.uniform(0, 1 - side))}
    if kind == "shift":
        while True:
            dx, dy = (int(v) for v in rng.integers(-SHIFT_PX, SHIFT_PX + 1, 2))
            if dx or dy:
                return {"dx": dx, "dy": dy}
    if kind == "mirror":
        return {}
    if kind == "brightness_contrast":
        return {"brightness": float(rng.uniform(*FACTOR)), "contrast": float(rng.uniform(*FACTOR))}
    if kind == "colour":
        return {"gains": [float(g) for g in rng.uniform(*GAIN, 3)], "saturation": float(rng.uniform(*FACTOR))}
    if kind == "reencode":
        return {"quality": int(rng.integers(QUALITY[0], QUALITY[1] + 1))}
    raise ValueError(f"unknown edit kind {kind!r}; kinds are {KINDS}")


def apply(img: np.ndarray, kind: str, p: dict) -> np.ndarray:
    """One edit of ``img`` uint8 (H, W[, 3]) -> uint8 of the same shape."""
    from PIL import Image, ImageEnhance

    img = np.asarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    if kind == "crop":
        s, x0, y0 = p["side"], p["x0"] * w, p["y0"] * h
        box = (x0, y0, x0 + s * w, y0 + s * h)
        return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC, box=box))
    if kind == "shift":
        dx, dy = (round(p[a] * n / 32) for a, n in (("dx", w), ("dy", h)))
        r = max(abs(dx), abs(dy), 1)
        pad = ((r, r), (r, r)) + (((0, 0),) if img.ndim == 3 else ())
        big = np.pad(img, pad, mode="edge")
        return big[r - dy:r - dy + h, r - dx:r - dx + w].copy()
    if kind == "mirror":
        return img[:, ::-1].copy()
    if kind == "brightness_contrast":
        im = ImageEnhance.Brightness(Image.fromarray(img)).enhance(p["brightness"])
        return np.asarray(ImageEnhance.Contrast(im).enhance(p["contrast"]))
    if kind == "colour":
        if img.ndim == 2:  # a grey image has no colour to shift
            return img.copy()
        x = np.clip(np.rint(img.astype(np.float64) * np.asarray(p["gains"])), 0, 255).astype(np.uint8)
        return np.asarray(ImageEnhance.Color(Image.fromarray(x)).enhance(p["saturation"]))
    if kind == "reencode":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=p["quality"])
        buf.seek(0)
        out = Image.open(buf)
        return np.asarray(out.convert("RGB" if img.ndim == 3 else "L"))
    raise ValueError(f"unknown edit kind {kind!r}; kinds are {KINDS}")


def apply_all(img: np.ndarray, edits: list[tuple[str, dict]]) -> np.ndarray:
    for kind, p in edits:
        img = apply(img, kind, p)
    return img


def edge_cases(kind: str) -> list[dict]:
    """Parameters at the edges of ``kind``'s range (what the tests check)."""
    lo, hi = FACTOR
    if kind == "crop":
        s = CROP_SIDE[0]
        return [{"side": s, "x0": 0.0, "y0": 0.0}, {"side": s, "x0": 1 - s, "y0": 1 - s},
                {"side": s, "x0": (1 - s) / 2, "y0": (1 - s) / 2}]
    if kind == "shift":
        m = SHIFT_PX
        return [{"dx": m, "dy": m}, {"dx": -m, "dy": 0}, {"dx": 0, "dy": -m}]
    if kind == "mirror":
        return [{}]
    if kind == "brightness_contrast":
        return [{"brightness": b, "contrast": c} for b in (lo, hi) for c in (lo, hi)]
    if kind == "colour":
        return [{"gains": [GAIN[1], GAIN[0], GAIN[1]], "saturation": lo},
                {"gains": [GAIN[0], GAIN[1], GAIN[0]], "saturation": hi}]
    if kind == "reencode":
        return [{"quality": QUALITY[0]}]
    raise ValueError(f"unknown edit kind {kind!r}; kinds are {KINDS}")


def plant(originals: np.ndarray, n_copies: int, seed: int, *, max_kinds: int = 3):
    """Edited copies of ``n_copies`` distinct originals (n, H, W[, 3]) uint8.

    Returns copies (n_copies, H, W[, 3]) uint8, their sources (n_copies,) indices into
    ``originals``, and each copy's edits [(kind, params), ...] (1 to ``max_kinds``
    different kinds, in the order of :data:`KINDS`)."""
    if n_copies > len(originals):
        raise ValueError(f"cannot plant {n_copies} copies of {len(originals)} distinct originals")
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(originals), n_copies, replace=False)
    copies, edits = [], []
    for s in sources:
        k = int(rng.integers(1, max_kinds + 1))
        kinds = [KINDS[i] for i in sorted(rng.choice(len(KINDS), k, replace=False))]
        e = [(kind, draw(kind, rng)) for kind in kinds]
        copies.append(apply_all(originals[s], e))
        edits.append(e)
    return np.stack(copies), sources.astype(np.int64), edits


def natural_like(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """n synthetic colour images uint8 (n, size, size, 3) with a natural image's
    statistics: a 1/f^2 power spectrum (random phases) plus a few flat shapes with
    sharp edges. Different seeds and indices give unrelated images (tests' data)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = 1.0 / np.maximum(radius, 1.0 / size) ** 2
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        field = np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((3, size, size)))).real
        field = (field - field.mean((1, 2), keepdims=True)) / field.std((1, 2), keepdims=True)
        img = 0.5 + 0.15 * field.transpose(1, 2, 0) + rng.normal(0, 0.08, 3)
        for _ in range(int(rng.integers(2, 5))):  # shapes: an ellipse or a rectangle
            cx, cy, rx, ry = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.3)
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1 if rng.random() < 0.5 else \
                (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
            img[inside] = 0.3 * img[inside] + 0.7 * rng.uniform(0, 1, 3)
        out[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------ realistic edits ---
# Real near-duplicates (CIFAR-10's own, judged by eye: curate/bench/data/cifar10_pairs.csv)
# differ by several *mild* edits at once. The distributions below follow what
# `python -m curate.bench.real_pairs measure --fit` fitted on the tuning half's positive
# pairs (curate/bench/data/README.md has the table).

#: PIL resampling filters a crop is resized back with (one drawn per copy)
FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
#: The distributions of :func:`draw_real`. A pair's direction is arbitrary, so every
#: photometric change is drawn symmetric in log (or sign); fitted on the tuning half
#: (168 positive pairs): 1 - crop side median 0.05, 90th percentile 0.18; |shift| median
#: 0.9 px, 90th 2.6 px; 10 % mirrored; contrast |log gain| median 0.07; brightness at
#: mid-grey median |0.9| levels, 5th-95th -29..28; per-channel log-gain SD median 0.015,
#: 90th 0.08; log gamma SD 0.21; blur |sigma| median 0.6 px (partly the fit's own
#: bilinear resampling); fit residual median 9.6 grey levels RMS: the two images' own
#: JPEG round trips and whatever else differs, matched here by always re-encoding (a
#: planted copy otherwise shares its source's JPEG noise and comes out too clean) and
#: adding mild pixel noise.
REAL = {
    "crop_mean": 0.07,            # 1 - side ~ Exponential(mean), clipped at crop_max
    "crop_max": 0.25,
    "shift_p": (0.6, 0.32, 0.08),  # per axis: P(0 px), P(+-1 px), P(+-2 px) at a 32 px side
    "mirror": 0.1,                # probability of a left-right flip
    "contrast_mean": 0.1,         # |log gain| ~ Exponential(mean), random sign, clipped at 0.5
    "brightness_sd": 12.0,        # offset at mid-grey ~ Normal(0, sd) grey levels
    "channel_sd": 0.04,           # per-channel log-gain ~ Normal(0, s), s ~ Exponential(sd): a colour cast
    "gamma_sd": 0.2,              # log gamma ~ Normal(0, sd), clipped at +-0.4
    "blur": (-0.8, 0.8),          # uniform; > 0 Gaussian sigma px, < 0 unsharp mask strength
    "noise": (0.0, 6.0),          # Gaussian pixel noise SD, grey levels, uniform
    "quality": (40, 90),          # JPEG re-encode (4:2:0) quality, uniform
    "reencode": 1.0,              # probability of a re-encode
}


def identity_real() -> dict:
    """The parameters of :func:`apply_real` that leave an image exactly as it is."""
    return {"crop": {"side": 1.0, "x0": 0.0, "y0": 0.0}, "filter": "bicubic", "dx": 0, "dy": 0,
            "mirror": False, "blur": 0.0, "gains": [1.0, 1.0, 1.0], "offsets": [0.0, 0.0, 0.0],
            "gamma": 1.0, "noise": 0.0, "noise_seed": 0, "quality": None}


def draw_real(rng: np.random.Generator, ranges: dict | None = None) -> dict:
    """Parameters of one realistic edit: all of crop + resample (a random filter), shift,
    (sometimes) mirror, blur or sharpening, per-channel affine colour + gamma, and
    (sometimes) a JPEG re-encode, drawn from the distributions of ``ranges`` (default :data:`REAL`)."""
    r = {**REAL, **(ranges or {})}
    side = 1.0 - min(float(rng.exponential(r["crop_mean"])), r["crop_max"])
    contrast = np.exp(rng.choice((-1.0, 1.0)) * min(float(rng.exponential(r["contrast_mean"])), 0.5))
    gains = contrast * np.exp(rng.normal(0.0, rng.exponential(r["channel_sd"]), 3))
    # the offset that moves mid-grey by the drawn brightness after the gains
    offsets = float(rng.normal(0.0, r["brightness_sd"])) - (gains - 1.0) * 127.5
    dx, dy = (int(rng.choice((0, 1, 2), p=r["shift_p"]) * rng.choice((-1, 1))) for _ in range(2))
    return {"crop": {"side": side, "x0": float(rng.uniform(0, 1 - side)), "y0": float(rng.uniform(0, 1 - side))},
            "filter": FILTERS[int(rng.integers(len(FILTERS)))], "dx": dx, "dy": dy,
            "mirror": bool(rng.random() < r["mirror"]), "blur": float(rng.uniform(*r["blur"])),
            "gains": [float(v) for v in gains], "offsets": [float(v) for v in offsets],
            "gamma": float(np.exp(np.clip(rng.normal(0.0, r["gamma_sd"]), -0.4, 0.4))),
            "noise": float(rng.uniform(*r["noise"])), "noise_seed": int(rng.integers(2**31)),
            "quality": int(rng.integers(r["quality"][0], r["quality"][1] + 1)) if rng.random() < r["reencode"]
            else None}


def apply_real(img: np.ndarray, p: dict) -> np.ndarray:
    """A realistic edit ``p`` (:func:`draw_real`) of ``img`` uint8 (H, W[, 3]) -> uint8 of
    the same shape: geometry (crop resized back with ``filter``, integer shift with edge
    replication, mirror), then blur (sigma > 0) or unsharp masking (sigma < 0), then colour
    ``255 * (g_c * (x / 255) ** gamma) + o_c`` plus Gaussian noise (SD ``noise`` grey levels,
    from ``noise_seed``), then the JPEG re-encode."""
    from PIL import Image, ImageFilter

    img = np.asarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    c = p["crop"]
    if (c["side"], c["x0"], c["y0"]) != (1.0, 0.0, 0.0):
        x0, y0 = c["x0"] * w, c["y0"] * h
        box = (x0, y0, x0 + c["side"] * w, y0 + c["side"] * h)
        filt = getattr(Image.Resampling, p["filter"].upper())
        img = np.asarray(Image.fromarray(img).resize((w, h), filt, box=box))
    if p["dx"] or p["dy"]:
        img = apply(img, "shift", {"dx": p["dx"], "dy": p["dy"]})
    if p["mirror"]:
        img = img[:, ::-1].copy()
    s = p["blur"]
    if s > 0:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(s)))
    elif s < 0:  # sharpening: unsharp mask, radius 1 px, strength |s|
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.UnsharpMask(1, int(round(-s * 100)), 0)))
    gains, offs = np.asarray(p["gains"], dtype=np.float64), np.asarray(p["offsets"], dtype=np.float64)
    if img.ndim == 2:
        gains, offs = gains.mean(keepdims=True), offs.mean(keepdims=True)
    noise = p.get("noise", 0.0)
    if p["gamma"] != 1.0 or (gains != 1).any() or (offs != 0).any() or noise > 0:
        x = 255 * gains * (img.astype(np.float64) / 255) ** p["gamma"] + offs
        if noise > 0:
            x = x + np.random.default_rng(p["noise_seed"]).normal(0.0, noise, x.shape)
        img = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if p["quality"] is not None:
        img = apply(img, "reencode", {"quality": p["quality"]})
    return img


def plant_real(originals: np.ndarray, n_copies: int, seed: int, ranges: dict | None = None):
    """Like :func:`plant`, with realistic edits: copies (n_copies, H, W[, 3]) uint8, sources
    (n_copies,), parameters per copy. Copy i's edit is drawn from its own seed (seed, i)."""
    if n_copies > len(originals):
        raise ValueError(f"cannot plant {n_copies} copies of {len(originals)} distinct originals")
    sources = np.random.default_rng(seed).choice(len(originals), n_copies, replace=False)
    params = [draw_real(np.random.default_rng((seed, i)), ranges) for i in range(n_copies)]
    copies = np.stack([apply_real(originals[s], p) for s, p in zip(sources, params)])
    return copies, sources.astype(np.int64), params
