"""Bad image files: each is converted by the loader's stated policy (and scored as
the converted pixels) or recorded as a per-sample failure with a reason; the rest of
the run completes."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import curate
from curate.data.tensors import to_model_range
from curate.models.exact import ExactScore

rng = np.random.RandomState(0)
GREY = rng.randint(0, 256, (8, 8)).astype(np.uint8)
RGB = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)


def _rep(g):
    return np.repeat(g[None], 3, axis=0)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (a decompression bomb); no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


def _png16_rgb(path, rgb16):
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), rgb16 (H, W, 3) uint16."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _write_cases(folder):
    """{name: (path, expected (3, 8, 8) uint8 or a reason substring)}."""
    cases = {}

    def put(name, expect, writer):
        p = folder / name
        writer(p)
        cases[name] = (p, expect)

    put("rgb.png", RGB.transpose(2, 0, 1), lambda p: Image.fromarray(RGB).save(p))
    put("grey.png", _rep(GREY), lambda p: Image.fromarray(GREY).save(p))
    bits = GREY > 127
    put("bilevel.png", _rep(np.where(bits, 255, 0).astype(np.uint8)),
        lambda p: Image.fromarray(bits).save(p))
    alpha = rng.randint(0, 256, (8, 8)).astype(np.uint8)
    put("rgba.png", RGB.transpose(2, 0, 1),  # alpha dropped, not composited
        lambda p: Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(p))
    put("grey_alpha.png", _rep(GREY), lambda p: Image.fromarray(np.dstack([GREY, alpha]), "LA").save(p))
    palette = rng.randint(0, 256, (256, 3)).astype(np.uint8)
    index = rng.randint(0, 16, (8, 8)).astype(np.uint8)

    def pal(p, transparency=None):
        im = Image.fromarray(index, "P")
        im.putpalette(palette.reshape(-1).tolist())
        im.save(p, transparency=transparency) if transparency is not None else im.save(p)
    put("palette.png", palette[index].transpose(2, 0, 1), pal)
    put("palette_transparent.png", palette[index].transpose(2, 0, 1), lambda p: pal(p, 3))
    g16 = rng.randint(0, 65536, (8, 8)).astype(np.uint16)
    put("grey16.png", _rep(np.rint(g16 * (255 / 65535)).astype(np.uint8)),
        lambda p: Image.fromarray(g16).save(p))
    c16 = rng.randint(0, 65536, (8, 8, 3)).astype(np.uint16)
    put("rgb16.png", (c16 >> 8).astype(np.uint8).transpose(2, 0, 1),  # Pillow keeps the high byte
        lambda p: _png16_rgb(p, c16))
    cmyk = rng.randint(0, 256, (8, 8, 4)).astype(np.int64)
    want = np.rint((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255).astype(np.uint8)
    put("cmyk.tiff", want.transpose(2, 0, 1),
        lambda p: Image.fromarray(cmyk.astype(np.uint8), "CMYK").save(p))

    # Per-sample failures, with the reason the message must give.
    cases["missing.png"] = (folder / "missing.png", "No such file")
    put("empty.png", "empty file", lambda p: p.write_bytes(b""))
    put("text.png", "UnidentifiedImageError", lambda p: p.write_text("not an image"))
    good = folder / "rgb.png"
    put("truncated.png", "Error", lambda p: p.write_bytes(good.read_bytes()[:60]))
    big = rng.randint(0, 256, (64, 64, 3)).astype(np.uint8)

    def trunc_jpeg(p):
        Image.fromarray(big).save(p.with_suffix(".full.jpg"), quality=95)
        p.write_bytes(p.with_suffix(".full.jpg").read_bytes()[:900])
    put("truncated.jpg", "64x64 but this run uses 8x8", trunc_jpeg)  # size known from the header
    put("truncated8.jpg", "truncated", lambda p: (
        Image.fromarray(RGB).save(p.with_suffix(".full.jpg"), quality=100),
        p.write_bytes(p.with_suffix(".full.jpg").read_bytes()[:-40])))
    put("wrong_size.png", "9x8 but this run uses 8x8", lambda p: Image.fromarray(RGB[:8].repeat(2, 0)[:9]).save(p))
    put("huge.png", "6000x5000 but this run uses 8x8",
        lambda p: Image.new("RGB", (5000, 6000), (10, 20, 30)).save(p))
    put("bomb.png", "DecompressionBombError", lambda p: _png_header_only(p, 30000, 30000))
    put("float.tiff", "floating-point", lambda p: Image.fromarray(GREY.astype(np.float32), "F").save(p))
    return cases


@pytest.fixture
def bad_ds(fo, tmp_path):
    cases = _write_cases(tmp_path)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p), name=name) for name, (p, _) in cases.items()])
    yield ds, cases
    ds.delete()


def test_each_bad_image_is_converted_or_a_reasoned_failure(bad_ds):
    from curate.brain import compute_volume_growth

    ds, cases = bad_ds
    converted = {n: e for n, (_, e) in cases.items() if isinstance(e, np.ndarray)}
    failures = {n: e for n, (_, e) in cases.items() if isinstance(e, str)}
    # The model: exact score of the converted images themselves (3 x 8 x 8).
    names = sorted(converted)
    pixels = to_model_range(np.stack([converted[n] for n in names])).to(torch.float64)
    model = ExactScore(pixels)
    s = compute_volume_growth(ds, model, size=(8, 8), channels=3, steps=2, batch_size=4,
                              num_workers=2, progress=False)
    assert (s.scored, s.failed) == (len(converted), len(failures))
    by_name = {n: (v, e) for n, v, e in zip(*ds.values(["name", "volume_growth", "volume_growth_error"]))}
    # Converted ones: scored exactly like the pixels the policy prescribes.
    want = curate.track_volume_growth(model, pixels, steps=2, dtype=torch.float64, divergence=None)
    for n, w in zip(names, want.log_growth.tolist()):
        value, err = by_name[n]
        assert err is None and value == pytest.approx(w, rel=1e-12, abs=1e-12), n
    # Failures: no score, a message with the reason.
    for n, reason in failures.items():
        value, err = by_name[n]
        assert value is None and err and reason in err, (n, err)


def test_resize_policy_and_channel_inference(bad_ds, fo, tmp_path):
    from curate.brain import compute_volume_growth
    from curate.data.loader import resolve_policy

    ds, cases = bad_ds
    # Grey-with-alpha and 16-bit grey count as one channel when the policy is inferred.
    for name in ("grey_alpha.png", "grey16.png", "bilevel.png"):
        assert resolve_policy(ds.match({"name": name})).channels == 1, name
    assert resolve_policy(ds.match({"name": "palette.png"})).channels == 3
    # resize=True: the wrong-size and the huge image are resized (bicubic) and scored.
    view = ds.match({"name": {"$in": ["rgb.png", "wrong_size.png", "huge.png"]}})
    model = ExactScore(to_model_range(RGB.transpose(2, 0, 1)[None]).to(torch.float64))
    s = compute_volume_growth(view, model, size=(8, 8), channels=3, resize=True, steps=1,
                              score_field="resized", progress=False)
    assert (s.scored, s.failed) == (3, 0)
    huge = view.match({"name": "huge.png"}).first()
    flat = np.broadcast_to(np.array([10, 20, 30], np.uint8)[:, None, None], (3, 8, 8))
    want = curate.track_volume_growth(model, to_model_range(flat[None].copy()).to(torch.float64),
                                      steps=1, dtype=torch.float64, divergence=None)
    assert huge.resized == pytest.approx(float(want.log_growth[0]), rel=1e-12)
