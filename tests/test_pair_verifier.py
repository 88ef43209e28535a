"""The prototype pair verifier (curate.bench._pair_verifier): training is seeded, the score
is symmetric in the pair's order, and after a few steps an edited copy scores above an
unrelated photo far more often than chance."""
import numpy as np
import pytest
import torch

from curate.bench import _pair_verifier as P
from curate.duplicates import edits


@pytest.mark.parametrize("negatives_as", P.NEGATIVES)
def test_verifier_training_is_seeded_symmetric_and_learns(negatives_as):
    torch.set_num_threads(1)
    images = edits.natural_like(200, seed=4)
    views = np.stack([[edits.apply_real(im, edits.draw_real(np.random.default_rng((k, i)))) for i, im in
                       enumerate(images)] for k in range(2)])
    rng = np.random.default_rng(0)
    neg = np.array([(i, j) for i, j in rng.integers(0, 200, (400, 2)) if i != j])
    nets = [P.train(images, views, neg, np.arange(200), steps=30, progress=p, negatives_as=negatives_as) for p in (False, True)]
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    copies = np.stack([edits.apply_real(im, edits.draw_real(np.random.default_rng((9, i)))) for i, im in
                       enumerate(images[:60])])
    both = np.concatenate([images, copies])
    same = np.array([(i, 200 + i) for i in range(60)])
    other = np.array([(i, 200 + (i + 1) % 60) for i in range(60)])
    s_same, s_other = P.score(nets[0], both, same), P.score(nets[0], both, other)
    np.testing.assert_allclose(P.score(nets[0], both, same[:, ::-1].copy()), s_same, rtol=1e-4, atol=1e-4)
    assert (s_same > s_other).mean() > 0.8


def test_verifier_refuses_an_unknown_way_of_showing_negatives():
    images = edits.natural_like(8, seed=4)
    with pytest.raises(ValueError, match="negatives_as"):
        P.train(images, images[None], np.array([[0, 1]]), np.arange(8), steps=1, negatives_as="mixed")


def test_the_rule_is_chosen_by_false_hits_first_then_finds():
    names = [r[0] for r in P.FLOORED[:4]]
    res = lambda rows: {"rules": {n: {"tp": tp, "fp": fp} for n, (tp, fp) in rows.items()}}  # noqa: E731
    band = res({"shipped": (28, 2), names[0]: (45, 5), names[1]: (40, 2), names[2]: (40, 1), names[3]: (30, 0)})
    first = res({"shipped": (160, 3), names[0]: (168, 4), names[1]: (166, 5), names[2]: (165, 4), names[3]: (161, 3)})
    # names[0] lets in more look-alikes on the band, names[1] two more on the first set
    assert P.choose(band, first, P.FLOORED[:4]) == names[2]
    first["rules"][names[1]]["fp"] = 4  # now names[1] and names[2] find as many: the first set's finds decide
    assert P.choose(band, first, P.FLOORED[:4]) == names[1]
    for n in names:
        band["rules"][n]["fp"] = 3
    assert P.choose(band, first, P.FLOORED[:4]) == "shipped"


def test_a_tie_goes_to_the_rule_without_a_reach_beyond_the_band():
    plain = next(r for r in P.FLOORED if r[1] == 5.0 and r[2] is None)
    reach = next(r for r in P.FLOORED if r[1] == 5.0 and r[2] is not None and r[3] == 8.0)
    res = lambda: {"rules": {"shipped": {"tp": 28, "fp": 2}, plain[0]: {"tp": 31, "fp": 2}, reach[0]: {"tp": 31, "fp": 2}}}  # noqa: E731
    assert P.choose(res(), res(), [reach, plain]) == P.choose(res(), res(), [plain, reach]) == plain[0]


def test_the_shipped_verifier_is_symmetric_batch_invariant_and_tells_copies_from_others():
    """curate.duplicates.copy_verifier with the shipped weights: the logit of (a, b) is that of
    (b, a), does not depend on the chunking (beyond float32 rounding), equals the bench's score of the same uint8 images
    (a second computation: another input path), and an edited copy outscores another photo."""
    from curate.data.tensors import hwc_uint8_to_nchw
    from curate.duplicates import copy_verifier as CV

    torch.set_num_threads(1)
    photos = edits.natural_like(24, seed=8)
    copies = np.stack([edits.apply_real(im, edits.draw_real(np.random.default_rng((3, i)))) for i, im in
                       enumerate(photos)])
    u8 = np.concatenate([photos, copies])
    x = hwc_uint8_to_nchw(u8)
    same = np.array([(i, 24 + i) for i in range(24)])
    other = np.array([(i, 24 + (i + 5) % 24) for i in range(24)])
    v = CV.CopyVerifier()
    s_same = v.logits(x[same[:, 0]], x[same[:, 1]])
    np.testing.assert_allclose(v.logits(x[same[:, 1]], x[same[:, 0]]), s_same, atol=1e-4)
    np.testing.assert_allclose(v.logits(x[same[:, 0]], x[same[:, 1]], chunk=5), s_same, atol=1e-5)
    np.testing.assert_allclose(P.score(CV.load(), u8, same), s_same, atol=1e-4)
    s_other = v.logits(x[other[:, 0]], x[other[:, 1]])
    assert (s_same > s_other).mean() > 0.9
    with pytest.raises(ValueError, match="as many"):
        v.logits(x[:3], x[:2])


def test_pair_logits_read_each_image_once_and_equal_the_logits_of_the_images():
    """CopyVerifier.pair_logits (rows -> images by a reader): the distinct rows are read in one
    call, and the logits are those of the images given directly."""
    from curate.data.tensors import hwc_uint8_to_nchw
    from curate.duplicates import copy_verifier as CV

    torch.set_num_threads(1)
    x = hwc_uint8_to_nchw(edits.natural_like(8, seed=2))
    pairs = np.array([(5, 1), (1, 2), (7, 5), (2, 1)])
    calls = []

    def read(rows):
        calls.append(rows.tolist())
        return x[rows]

    v = CV.CopyVerifier()
    got = v.pair_logits(read, pairs)
    assert calls == [[1, 2, 5, 7]]
    np.testing.assert_array_equal(got, v.logits(x[pairs[:, 0]], x[pairs[:, 1]]))


def test_the_sharing_reader_hands_one_calls_images_to_the_next_call_once():
    from curate.duplicates.copy_verifier import sharing_reader

    calls = []

    def read(rows):
        calls.append(rows.tolist())
        return rows * 10

    shared = sharing_reader(read)
    rows = np.array([2, 5, 7])
    first = shared(rows)
    np.testing.assert_array_equal(shared(rows.copy()), first)  # handed on: not read again
    assert calls == [[2, 5, 7]]
    shared(rows)  # let go after it was handed on: read again
    np.testing.assert_array_equal(shared(np.array([7, 2])), [70, 20])  # some of them, in any order
    assert calls == [[2, 5, 7], [2, 5, 7]]
    shared(np.array([1, 2]))  # not among them (let go anyway): read
    shared(np.array([2]))  # among the last read: handed on
    shared(np.array([2]))
    assert calls == [[2, 5, 7], [2, 5, 7], [1, 2], [2]]
