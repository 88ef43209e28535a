"""The near-duplicate descriptor (curate.duplicates) without FiftyOne: edits at the edges of
their ranges are found, different images are not, mirroring obeys the switch, and the
numbers do not depend on batches or order. Data: synthetic natural-like images the
tests make, scikit-learn's real digits, and CIFAR-10 from ../shared when present."""
from pathlib import Path

import numpy as np
import pytest

from curate.duplicates.choices import DEFAULT_THRESHOLD
from curate.duplicates import Aligner, Descriptor, DescriptorSpec, find_pairs
from curate.duplicates import edits as E
from curate.duplicates.search import KeySearch, mirror_basis
from curate.duplicates.verify import PairVerifier

THRESHOLD = DEFAULT_THRESHOLD["descriptor"]
CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"


def _model_range(u8: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W[, 3]) -> (n, C, H, W) float32 in [-1, 1], as the loader gives them."""
    x = u8[..., None] if u8.ndim == 3 else u8
    return x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1


def _aligned(images_u8: np.ndarray, pairs, mirror=True) -> np.ndarray:
    """Aligned distances of index pairs, every pair refined (no coarse shortcut)."""
    _, canvases = Descriptor().describe(_model_range(images_u8))
    return PairVerifier(Aligner(), canvases, mirror, refine_below=np.inf).distances(np.array(pairs))


def _groups(images_u8: np.ndarray, queries=None, **kw) -> set:
    d = Descriptor()
    keys, canvases = d.describe(_model_range(images_u8))
    n = len(images_u8)
    q = np.arange(n) if queries is None else np.asarray(queries)
    res = find_pairs(keys, canvases, q, kw.pop("threshold", THRESHOLD), descriptor=d, **kw)
    return {tuple(p) for p in res.pairs.tolist()}


@pytest.fixture(scope="module")
def photos():
    return E.natural_like(120, seed=11)


def _cifar(n: int, split="train", label=None):
    """The first n CIFAR-10 images of ``split`` (of one class), uint8, or skip."""
    if not (CIFAR / "order.csv").is_file():
        pytest.skip(f"CIFAR-10 image tree not found at {CIFAR}")
    from curate.data.cifar import CLASSES, tree_files
    from curate.bench._dedupe_measure import read_images

    files = [p for _, c, p in tree_files(CIFAR, split) if label is None or c == CLASSES[label]][:n]
    return read_images(files)


# ------------------------------------------------------------ found / not found ---

@pytest.mark.parametrize("kind", E.KINDS)
def test_each_edit_at_the_edge_of_its_range_is_found(photos, kind):
    cases = E.edge_cases(kind)
    copies = np.stack([E.apply(photos[i], kind, p) for i, p in enumerate(cases)])
    assert all(not np.array_equal(c, photos[i]) for i, c in enumerate(copies))  # really edited
    images = np.concatenate([photos, copies])
    n = len(photos)
    want = {(i, n + i) for i in range(len(cases))}
    # every copy is found, grouped with its own source and nothing else
    assert _groups(images) == want
    d = _aligned(images, sorted(want))
    assert (d <= THRESHOLD).all(), dict(zip(map(str, cases), d.round(3)))


def test_edits_at_the_edges_on_cifar():
    """Real photos, 24 per edge case: the aligned distance stays within the threshold for
    >= 95 % of them, and the whole search finds them -- except crops into a corner at the
    edge of the range (20 % cut from two sides), where the key search ranks the source
    among the 10 nearest for only ~3/4 of the photos (measured; see the README)."""
    photos = _cifar(200, split="test")
    m = 24
    cases = [(k, p) for k in E.KINDS for p in E.edge_cases(k)]
    copies = np.stack([E.apply(photos[j], k, p) for k, p in cases for j in range(m)])
    images = np.concatenate([photos, copies])
    pairs = [(j, 200 + c * m + j) for c in range(len(cases)) for j in range(m)]
    d = _aligned(images, pairs).reshape(len(cases), m)
    found = _groups(images)
    hit = np.array([p in found for p in pairs]).reshape(len(cases), m)
    for (kind, p), dd, hh in zip(cases, d, hit):
        assert (dd <= THRESHOLD).mean() >= 0.95, (kind, p, dd.round(3))
        corner = kind == "crop" and p["x0"] != p["y0"] or kind == "crop" and p["x0"] in (0.0, 1 - p["side"])
        assert hh.mean() >= (0.5 if corner else 0.95), (kind, p, hh.mean())


def test_different_images_are_not_grouped(photos):
    # 120 unrelated synthetic photos: no pair, and far above the threshold
    assert _groups(photos) == set()
    pairs = [(i, j) for i in range(0, 40) for j in range(i + 1, 40)]
    assert _aligned(photos[:40], pairs).min() > 2 * THRESHOLD


def test_two_digits_of_the_same_class_are_not_grouped():
    """Real 8x8 digits of one class (different writers) look as alike as copies of a
    photo; the background cap keeps them apart, a plain threshold would not."""
    from curate.data.tensors import digits_images

    x, y = digits_images(return_labels=True)
    u8 = np.rint((x[y == 3, 0].numpy() + 1) * 127.5).astype(np.uint8)[:60]
    from PIL import Image

    up = np.stack([np.asarray(Image.fromarray(a).resize((32, 32), Image.BICUBIC)) for a in u8])
    assert len({a.tobytes() for a in u8}) == len(u8)  # all different images
    d = Descriptor()
    keys, canvases = d.describe(_model_range(up))
    plain = find_pairs(keys, canvases, np.arange(len(up)), THRESHOLD, descriptor=d)
    capped = find_pairs(keys, canvases, np.arange(len(up)), THRESHOLD, descriptor=d,
                        relative=0.4, reference=np.arange(len(up)))
    assert len(plain.pairs) > 0  # without the cap they would be grouped
    assert capped.threshold < 0.6 * THRESHOLD and len(capped.pairs) == 0
    # and an exact copy among them is still found under the cap
    both = np.concatenate([up, up[:1]])
    keys, canvases = d.describe(_model_range(both))
    res = find_pairs(keys, canvases, np.arange(len(both)), THRESHOLD, descriptor=d,
                     relative=0.4, reference=np.arange(len(both)))
    assert {tuple(p) for p in res.pairs.tolist()} == {(0, len(up))}


def test_cifar_images_of_one_class_are_not_grouped():
    cats = _cifar(150, split="test", label=3)
    assert _groups(cats, relative=0.4, reference=np.arange(len(cats))) == set()


# ------------------------------------------------------------------- mirroring ---

def test_mirroring_is_found_only_when_asked(photos):
    n = len(photos)
    mirrored = photos[:5, :, ::-1]
    images = np.concatenate([photos, mirrored])
    want = {(i, n + i) for i in range(5)}
    assert _groups(images, mirror=True) == want
    assert _groups(images, mirror=False) == set()
    on = _aligned(images, sorted(want), mirror=True)
    off = _aligned(images, sorted(want), mirror=False)
    np.testing.assert_array_equal(on, 0.0)  # a mirror image is an exact match when mirrored back
    assert off.min() > 2 * THRESHOLD


def test_mirror_permutation_gives_the_keys_of_flipped_images(photos):
    d = Descriptor()
    x = _model_range(photos[:16])
    keys, _ = d.describe(x)
    flipped, _ = d.describe(x[..., ::-1])
    perm = d.mirror_permutation(3)
    np.testing.assert_allclose(keys[:, perm], flipped, atol=1e-6)
    np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))  # an involution
    S, A = mirror_basis(perm)
    np.testing.assert_allclose(S @ S.T + A @ A.T, np.eye(len(perm)), atol=1e-12)
    k64 = keys.astype(np.float64)
    np.testing.assert_allclose(k64[:, perm] @ S, k64 @ S, atol=1e-12)
    np.testing.assert_allclose(k64[:, perm] @ A, -(k64 @ A), atol=1e-12)


# --------------------------------------------------------------- determinism ---

def test_keys_and_canvases_do_not_depend_on_batch_or_order(photos):
    d = Descriptor()
    x = _model_range(photos[:40])
    keys, canvases = d.describe(x)
    rng = np.random.default_rng(0)
    for size in (1, 3, 17):
        order = rng.permutation(40)
        parts = [d.describe(x[order[s:s + size]]) for s in range(0, 40, size)]
        k = np.concatenate([p[0] for p in parts])
        c = np.concatenate([p[1] for p in parts])
        np.testing.assert_array_equal(k, keys[order])  # bitwise
        np.testing.assert_array_equal(c, canvases[order])


def test_a_stack_described_in_threads_is_bitwise_one_stack(photos):
    """Large stacks split over threads (THREAD_MIN images each at least): the same bits."""
    from curate.duplicates.descriptor import THREAD_MIN

    rng = np.random.default_rng(1)
    n = 3 * THREAD_MIN + 5
    x = _model_range(photos[rng.integers(0, len(photos), n)])
    x = np.clip(x + rng.normal(0, 0.05, x.shape).astype(np.float32), -1, 1)  # every image its own
    one = Descriptor(threads=1).describe(x)
    for threads in (2, 3):
        many = Descriptor(threads=threads).describe(x)
        np.testing.assert_array_equal(many[0], one[0])
        np.testing.assert_array_equal(many[1], one[1])


def test_pairs_do_not_depend_on_order(photos):
    edited = np.stack([E.apply_all(photos[i], [("crop", E.edge_cases("crop")[0]), ("reencode", {"quality": 40})])
                       for i in range(6)])
    images = np.concatenate([photos[:60], edited, edited[:2]])  # two copies twice
    base = _groups(images)
    order = np.random.default_rng(1).permutation(len(images))
    shuffled = _groups(images[order])
    back = {tuple(sorted((int(order[a]), int(order[b])))) for a, b in shuffled}
    assert back == base
    assert {(i, 60 + i) for i in range(6)} <= base and (60, 66) in base and (61, 67) in base


def test_background_reference_is_chosen_by_the_images_alone():
    """The reference images of the background (hence the threshold cap, hence the groups)
    are a function of the keys: the same images in any order -- and whatever sample ids or
    paths a collection gives them (a first version hashed the ids: two datasets of the
    same images grouped 280 and 278 copies)."""
    from curate.duplicates.search import reference_sample

    keys = np.random.default_rng(5).normal(size=(200, 16)).astype(np.float32)
    ref = reference_sample(keys, size=50)
    assert len(ref) == 50 and np.all(np.diff(ref) > 0)
    order = np.random.default_rng(6).permutation(200)
    ref_shuffled = reference_sample(keys[order], size=50)
    assert sorted(order[ref_shuffled].tolist()) == ref.tolist()
    np.testing.assert_array_equal(reference_sample(keys, size=500), np.arange(200))  # all when few
    assert not np.array_equal(reference_sample(keys + 1, size=50), ref)  # other images, other choice


def test_identical_images_are_at_distance_zero_and_threshold_zero_finds_only_them(photos):
    images = np.concatenate([photos[:30], photos[[4, 9]], E.apply(photos[5:6][0], "reencode", {"quality": 90})[None]])
    assert _groups(images, threshold=0.0) == {(4, 30), (9, 31)}
    np.testing.assert_array_equal(_aligned(images, [(4, 30), (9, 31)]), 0.0)
    assert _aligned(images, [(5, 32)])[0] > 0


def test_aligned_distance_is_symmetric(photos):
    copies = np.stack([E.apply(photos[i], "crop", E.edge_cases("crop")[i % 3]) for i in range(6)])
    images = np.concatenate([photos[:6], copies])
    ab = _aligned(images, [(i, 6 + i) for i in range(6)])
    ba = _aligned(images, [(6 + i, i) for i in range(6)])
    np.testing.assert_allclose(ab, ba, atol=1e-12)


def test_grey_and_any_size_images(photos):
    grey = np.stack([np.asarray(__import__("PIL.Image").Image.fromarray(p).convert("L")) for p in photos[:30]])
    big = np.stack([np.asarray(__import__("PIL.Image").Image.fromarray(p).resize((96, 80))) for p in photos[:30]])
    copy_grey = E.apply(grey[3], "shift", {"dx": 3, "dy": -3})
    assert _groups(np.concatenate([grey, copy_grey[None]])) == {(3, 30)}
    copy_big = E.apply(big[7], "crop", E.edge_cases("crop")[1])
    assert _groups(np.concatenate([big, copy_big[None]])) == {(7, 30)}
    d = Descriptor()
    assert d.describe(_model_range(grey[:2]))[0].shape == (2, d.key_dim(1))


# ------------------------------------------------------------------- search ---

def test_key_search_matches_brute_force_and_the_sklearn_index():
    rng = np.random.default_rng(2)
    d = Descriptor()
    perm = d.mirror_permutation(3)
    keys = rng.standard_normal((300, len(perm))).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    k64 = keys.astype(np.float64)
    sims = np.maximum(k64 @ k64.T, k64[:, perm] @ k64.T)  # best of a key and its mirror
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    q = np.arange(0, 300, 3)
    for index in ("exact", "ball_tree", "brute"):
        got = KeySearch(keys, perm, index=index, memory_mb=0.01).neighbours(q, 7)
        assert [set(r) for r in got.tolist()] == [set(r) for r in want[q].tolist()], index
    plain = KeySearch(keys, None).neighbours(q, 5)
    s = k64 @ k64.T
    np.fill_diagonal(s, -np.inf)
    assert [set(r) for r in plain.tolist()] == [set(r) for r in np.argsort(-s, 1)[q, :5].tolist()]


def test_many_copies_of_one_image_are_all_found(photos):
    """More copies than k candidates: the search widens until it meets a non-duplicate."""
    copies = np.stack([E.apply(photos[0], "brightness_contrast", {"brightness": 0.8 + 0.02 * i, "contrast": 1.0})
                       for i in range(25)])
    images = np.concatenate([photos[:50], copies])
    pairs = _groups(images, queries=[0], k=4)
    assert {b for a, b in pairs if a == 0} == set(range(50, 75))


def test_bad_input_is_refused():
    d = Descriptor()
    with pytest.raises(ValueError, match="C = 1 or 3"):
        d.describe(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        d.describe(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="work"):
        DescriptorSpec(work=7)
    with pytest.raises(ValueError, match="fractions"):
        DescriptorSpec(max_crop=0.7)
    with pytest.raises(ValueError, match="index"):
        KeySearch(np.zeros((3, 4), np.float32), None, index="annoy")
    keys, canvases = d.describe(np.zeros((3, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="k must be"):
        find_pairs(keys, canvases, np.arange(3), 0.1, descriptor=d, k=0)
    with pytest.raises(ValueError, match="unknown edit"):
        E.apply(np.zeros((4, 4, 3), np.uint8), "blur", {})


def test_flat_images_do_not_break_the_distance():
    flat = np.full((4, 16, 16, 3), 128, np.uint8)
    flat[1] = 30  # another flat grey
    d = _aligned(flat, [(0, 1), (0, 2)])
    assert np.isfinite(d).all() and (d == 0).all()  # all flat images look alike


def test_flat_images_have_finite_keys_and_find_each_other():
    """A blank image's key is finite (a NaN key would rank first for every query in the
    key search), and two blank images are each other's nearest keys and one group."""
    imgs = np.concatenate([E.natural_like(30, seed=4), np.full((2, 32, 32, 3), 200, np.uint8)])
    imgs[-1] = 40  # another flat grey
    d = Descriptor()
    keys, _ = d.describe(_model_range(imgs))
    assert np.isfinite(keys).all()
    assert np.allclose(np.linalg.norm(keys, axis=1), 1, atol=1e-6)
    nb = KeySearch(keys, d.mirror_permutation(3)).neighbours(np.array([30, 31]), 1)
    assert nb[:, 0].tolist() == [31, 30]
    groups = _groups(imgs)
    assert (30, 31) in groups and not any(30 in p or 31 in p for p in groups - {(30, 31)})


def test_bench_compare_puts_the_aligned_distance_ahead_of_pixels(photos):
    """The benchmark's threshold-free comparison (--compare): on mirrored and shifted
    copies the aligned distance finds every source, plain pixels miss the mirrored ones."""
    from curate.bench._dedupe_compare import compare

    orig = photos[:60]
    sources = np.arange(10)
    copies = np.stack([E.apply(orig[i], "mirror", {}) if i < 5 else E.apply(orig[i], "shift", {"dx": 3, "dy": -3})
                       for i in sources])
    r = compare(orig, copies, sources, k=5)
    assert set(r) == {"pixel", "thumbnail", "gist", "aligned"}
    assert r["aligned"]["nearest"] == 1.0 and r["aligned"]["recall_at_1pct"] == 1.0
    assert r["pixel"]["recall_at_1pct"] <= 0.5  # the five mirrored copies are far in pixels
    assert r["aligned"]["median_copy"] < r["aligned"]["t"]


def test_refine_many_is_the_local_search_of_each_problem(photos):
    """The vectorised local search equals Aligner.refine run problem by problem (second,
    independent computation), from every kind of start (mirrored or not, any coarse
    window), and does not depend on how the problems are chunked."""
    from curate.duplicates import Aligner

    rng = np.random.default_rng(4)
    d = Descriptor()
    al = Aligner(d.spec)
    src = photos[:40]
    edited = np.stack([E.apply_real(p, E.draw_real(rng)) for p in src])
    _, canvases = d.describe(_model_range(np.concatenate([src, edited])))
    targets = al.base(canvases[:40])
    moved = canvases[40:]
    j = rng.integers(0, 2 * al.n_windows, 40)
    starts = np.column_stack([(j >= al.n_windows).astype(float), al.params[j % al.n_windows]])
    loop = np.array([al.refine(moved[i], targets[i], (bool(starts[i, 0]), *starts[i, 1:]))[0] for i in range(40)])
    many = al.refine_many(moved, targets, starts)
    np.testing.assert_allclose(many, loop, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(al.refine_many(moved, targets, starts, chunk=7), many)



def test_the_numpy_image_helper_matches_the_torch_one_and_keeps_the_ends():
    from curate.data.tensors import hwc_uint8_to_nchw, to_model_range

    u8 = np.random.default_rng(0).integers(0, 256, (5, 7, 6, 3), dtype=np.uint8)
    u8[0, 0, 0] = (0, 128, 255)
    x = hwc_uint8_to_nchw(u8)
    assert x.dtype == np.float32 and x.shape == (5, 3, 7, 6)
    np.testing.assert_array_equal(x, to_model_range(u8.transpose(0, 3, 1, 2)).numpy())
    assert x[0, 0, 0, 0] == -1.0 and x[0, 2, 0, 0] == 1.0 and abs(x[0, 1, 0, 0] - (128 / 127.5 - 1)) < 1e-6
