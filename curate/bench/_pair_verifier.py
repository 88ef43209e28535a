"""A prototype pair verifier: a small network that sees both images of a pair at once.

``python -m curate.bench.real_pairs verifier --cifar-root ../shared/data/cifar10 --out DIR``
(after ``mine`` and ``embedding --edits heavy``, whose edited views it reuses)

The copy embedding judges a pair by two vectors computed apart; where the band set's
same-shot pairs and look-alikes are equally close in both the aligned distance and the
cosine (docs/near-duplicates.md, "The band set"), a network that compares the two images
pixel against pixel might see what the two summaries lose. A prototype, measured only:

1. pairs: positives are a training image and one of its edited views (or two views of
   it), from the heavier edit model (``_copy_embedding.HEAVY``); negatives are mined
   candidate pairs of two training images at aligned distance 0.2-0.6 -- look-alikes the
   keys rank close, a few percent of them unknowingly the same shot -- apart from every
   labelled set's images and their copies (so no judged pair is trained on); shown as they
   are, or (``--negatives edited``, the second verifier) each image as one of its own edited
   views or itself, drawn as a positive's are (:data:`NEGATIVES`);
2. input: both images standardised (as the embedding's), stacked as 6 channels, in a
   random order, both mirrored together half the time and one alone a tenth of the time;
3. train: binary cross-entropy, half positives per batch, AdamW with a one-cycle schedule;
4. measure: the logit, symmetrised over both orders and mirrors (:func:`score`), of every pair of a
   labelled set's half; AUROC of the same shot against look-alikes (sample and weighted to
   the band's pool) beside the shipped cosine's and the aligned distance's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curate.duplicates.choices import COSINE_FLOOR

STEPS, BATCH, LR = 2000, 256, 2e-3
NEGATIVE_RANGE = (0.2, 0.6)
#: How a negative pair's two images are shown in training: ``"plain"`` (as they are: the first
#: prototype, whose positives alone carry the edit model's traces -- resampling blur, colour
#: casts -- so "one image looks processed" is a shortcut to "the same shot"), or ``"edited"``
#: (each image, on its own, one of its edited views or itself, drawn as a positive's are).
NEGATIVES = ("plain", "edited")


def network():
    """(B, 6, 32, 32) two standardised images -> (B,) logits: the package's architecture
    (:func:`curate.duplicates.copy_verifier.network`), untrained."""
    from curate.duplicates.copy_verifier import network as package_network

    return package_network()


def negatives(candidates: list[dict], exclude: set[int]) -> np.ndarray:
    """(m, 2) mined train-train candidate pairs within NEGATIVE_RANGE, apart from ``exclude``."""
    lo, hi = NEGATIVE_RANGE
    return np.array([(r["a"], r["b"]) for r in candidates if r["kind"] == "train-train" and lo <= r["distance"] < hi
                     and r["a"] not in exclude and r["b"] not in exclude], dtype=np.int64).reshape(-1, 2)


def _stack(xa: np.ndarray, xb: np.ndarray):
    from curate.bench._copy_embedding import standardise

    import torch

    return torch.cat([standardise(xa), standardise(xb)], dim=1)


def shuffle_pairs(xa: np.ndarray, xb: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Step 2's views of a batch of pairs (m, 32, 32, 3), changed in place: each pair in a
    random order, both images mirrored together half the time, the second alone a tenth."""
    swap = rng.random(len(xa)) < 0.5
    xa[swap], xb[swap] = xb[swap], xa[swap].copy()
    both = rng.random(len(xa)) < 0.5
    xa[both], xb[both] = xa[both][:, :, ::-1], xb[both][:, :, ::-1]
    one = rng.random(len(xa)) < 0.1
    xb[one] = xb[one][:, :, ::-1]
    return xa, xb


def train(images: np.ndarray, views: np.ndarray, neg: np.ndarray, train_ids: np.ndarray, steps: int = STEPS,
          progress=True, negatives_as: str = "plain"):
    """Steps 1-3 (seeded). images (n, 32, 32, 3) uint8, views (V, TRAIN, 32, 32, 3) of the
    training images (rows 0..TRAIN-1 of ``images``), neg (m, 2) pairs of training rows,
    train_ids: the training images positives are drawn from; negatives_as: one of
    :data:`NEGATIVES`."""
    if negatives_as not in NEGATIVES:
        raise ValueError(f"negatives_as must be one of {NEGATIVES}, got {negatives_as!r}")
    import torch
    import torch.nn.functional as F

    from curate._progress import progress as bar
    from curate.bench._copy_embedding import optimise

    torch.manual_seed(0)
    net = network()
    opt = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    half = BATCH // 2
    y = torch.cat([torch.ones(half), torch.zeros(half)])
    with bar(steps, "training the pair verifier", progress, fields=("loss",)) as advance:
        for _ in range(steps):
            ids = rng.choice(train_ids, half, replace=False)
            a, b = rng.choice(len(views) + 1, 2, replace=False)  # 0: the image itself
            pa = views[a - 1, ids] if a else images[ids]
            pb = views[b - 1, ids] if b else images[ids]
            nb = neg[rng.choice(len(neg), half, replace=False)]
            na, nb_ = images[nb[:, 0]], images[nb[:, 1]]
            if negatives_as == "edited":  # each side a view (1..V) or itself (0), as a positive's
                ka, kb = rng.integers(0, len(views) + 1, (2, half))
                na = np.where((ka > 0)[:, None, None, None], views[np.maximum(ka - 1, 0), nb[:, 0]], na)
                nb_ = np.where((kb > 0)[:, None, None, None], views[np.maximum(kb - 1, 0), nb[:, 1]], nb_)
            xa, xb = shuffle_pairs(np.concatenate([pa, na]), np.concatenate([pb, nb_]), rng)
            advance(1, loss=optimise(opt, sched, F.binary_cross_entropy_with_logits(net(_stack(xa, xb)), y)))
    return net.eval()


def score(net, images: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(len(pairs),) the logit averaged over both orders and the joint mirror, the better of
    the pair as it is and with one image mirrored (mirroring is an edit a copy may have):
    symmetric in the pair's order (:func:`curate.duplicates.copy_verifier.symmetric_logits`)."""
    from curate.bench._copy_embedding import standardise
    from curate.duplicates.copy_verifier import symmetric_logits

    return symmetric_logits(net, standardise(images[pairs[:, 0]]), standardise(images[pairs[:, 1]]))


def _tag(negatives_as: str) -> str:
    """The part of a file name that tells the second verifier's files from the first's."""
    return "" if negatives_as == "plain" else f"{negatives_as}_"


def _weights(out: Path, steps: int, negatives_as: str) -> Path:
    return out / f"pair_verifier_{_tag(negatives_as)}{steps}.safetensors"


def load_network(out: Path, steps: int, negatives_as: str = "plain"):
    """The network :func:`measure` trained into ``out`` (None if there is none yet), in eval mode."""
    from curate.duplicates.copy_verifier import load

    f = _weights(out, steps, negatives_as)
    return load(f) if f.is_file() else None


def measure(root: Path, out: Path, half: str = "tuning", steps: int = STEPS, negatives_as: str = "plain") -> dict:
    """Steps 1-4 on one half of the band set and of the first set (network cached in ``out``)."""
    from safetensors.torch import save_file
    from sklearn.metrics import roc_auc_score

    from curate.bench import _real_pairs_band as B
    from curate.bench import _real_pairs_core as R
    from curate.bench import _real_pairs_mine as M
    from curate.bench._copy_embedding import views as edited_views
    from curate.duplicates.copy_embedding import cosine

    images, _, canvases, e, em = B.load(root, out)
    cands = R.read_candidates(out / "candidates.csv")
    net = load_network(out, steps, negatives_as)
    if net is None:
        exclude = B.exclusion(cands, fresh=1)  # every labelled image (band set too) and its copies
        train_ids = np.array(sorted(set(range(M.TRAIN)) - exclude))
        net = train(images, edited_views(images, out, "heavy"), negatives(cands, exclude), train_ids, steps,
                    negatives_as=negatives_as)
        save_file({k: t.contiguous() for k, t in net.state_dict().items()}, _weights(out, steps, negatives_as))
    pooled = B.pool(cands, e, em, B.exclusion(cands))
    res = {"steps": steps, "half": half, "negatives": negatives_as}
    for name, path in (("band", B.DATA_BAND), ("first", R.DATA)):
        rows = R.load_pairs(path, half)
        ab = np.array([(r["a"], r["b"]) for r in rows], dtype=np.int64)
        y = np.array([r["label"] for r in rows])
        s, c, d = score(net, images, ab), cosine(e, em, ab[:, 0], ab[:, 1]), R.aligned(canvases, rows)
        w = B.weights(rows, pooled)[1] if name == "band" else None
        out_set = {}
        for lo, hi in ((0.0, 0.2), (0.2, 0.35), (0.35, 0.45), (0.2, 0.45), (0.0, 9.0)):
            m = (d > lo) & (d <= hi)
            if 0 < y[m].sum() < m.sum():
                out_set[f"{lo}-{hi}"] = {
                    "pairs": int(m.sum()), "positives": int(y[m].sum()),
                    **{f"auroc_{k}": float(roc_auc_score(y[m], v[m]))
                       for k, v in (("verifier", s), ("cosine", c), ("aligned", -d))},
                    **({f"weighted_auroc_{k}": float(roc_auc_score(y[m], v[m], sample_weight=w[m]))
                        for k, v in (("verifier", s), ("cosine", c), ("aligned", -d))} if w is not None else {})}
        res[name] = out_set
    (out / f"{_weights(out, steps, negatives_as).stem}_{half}.json").write_text(json.dumps(res, indent=1))
    return res


#: (name, band score, reach, beyond score[, cosine floor]) of :func:`_real_pairs_band.decisions`:
#: the shipped rule plus "a band pair whose verifier logit is >= s", with or without pairs
#: beyond the band (to 0.45) at logit >= s'; then each of those with the embedding's own floor
#: (COSINE_FLOOR: a logit counts only where the cosine is >= it), which every rule of the
#: second verifier keeps (docs/near-duplicates.md).
#: The logits 5-8 were added for the second verifier, whose logits run higher (its rule grid
#: extended on the tuning halves, before the second fresh band set was measured).
_PLAIN_RULES = [(f"verifier {b}", b, None, None) for b in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)] + [
    (f"verifier {b}, beyond 0.45 at {s}", b, 0.45, s) for b in (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    for s in (2.0, 3.0, 4.0, 6.0, 8.0)]
FLOORED = [(f"{name}, cosine >= {COSINE_FLOOR}", *r, COSINE_FLOOR) for name, *r in _PLAIN_RULES]
RULES = _PLAIN_RULES + FLOORED


#: The name of the package's option among :func:`end_to_end`'s rules.
OPTION = "dedupe(verifier=True)"


def choose(band: dict, first: dict, candidates=FLOORED, shipped: str = "shipped") -> str:
    """The rule chosen on the tuning halves, fixed before a fresh set is measured: of the
    ``candidates`` whose false hits are at most the shipped rule's on the band set's tuning
    half (``band``: :func:`end_to_end`'s result) and at most one more on the first set's
    (``first``), the one that finds the most same-shot pairs of the band's half, then of the
    first's; a tie goes to the stricter rule (fewer false hits on both, then one without a
    reach beyond the band, then the higher band logit, then the higher beyond logit)."""
    b, f = band["rules"], first["rules"]
    ok = [r[0] for r in candidates if b[r[0]]["fp"] <= b[shipped]["fp"] and f[r[0]]["fp"] <= f[shipped]["fp"] + 1]
    if not ok:
        return shipped
    strict = {r[0]: (r[2] is None, r[1], r[3] if r[3] is not None else np.inf) for r in candidates}
    return max(ok, key=lambda n: (b[n]["tp"], f[n]["tp"], -b[n]["fp"] - f[n]["fp"], strict[n]))


def end_to_end(root: Path, out: Path, half: str, which: str = "band", steps: int = STEPS,
               negatives_as: str = "plain") -> dict:
    """The shipped decision and :data:`RULES` end to end among all 60,000 images on one half
    of a labelled set (as ``real_pairs band``), with the network ``measure`` trained."""
    from curate.bench import _real_pairs_band as B

    net = load_network(out, steps, negatives_as)
    if net is None:
        raise SystemExit(f"error: no pair verifier in {out}; train it first: python -m curate.bench.real_pairs "
                         f"verifier --steps {steps} --negatives {negatives_as} --out {out}")
    images, keys, canvases, e, em = B.load(root, out)
    rows = B.R.load_pairs(B.SETS[which], half)
    hits = B.decisions(keys, canvases, e, em, rows, rules=B.RULES[:1], verifier=lambda ab: score(net, images, ab),
                       verifier_rules=RULES)
    # the option as the package runs it (find_pairs' step 7 at its defaults: dedupe(verifier=True))
    hits[OPTION], _ = B.R.decided(keys, canvases, rows, embeddings=(e, em), verifier=lambda ab: score(net, images, ab))
    res = {"set": which, "half": half, "steps": steps, "negatives": negatives_as,
           **B.scored(hits, rows, which, out, e, em)}
    _rules_file(out, which, half, negatives_as).write_text(json.dumps(res, indent=1))
    return res


def _rules_file(out: Path, which: str, half: str, negatives_as: str) -> Path:
    return out / f"verifier_rules_{_tag(negatives_as)}{which}_{half}.json"


def chosen(out: Path, negatives_as: str = "plain") -> str:
    """:func:`choose` on the tuning halves' results :func:`end_to_end` wrote into ``out``."""
    res = {}
    for which in ("band", "first"):
        f = _rules_file(out, which, "tuning", negatives_as)
        if not f.is_file():
            raise SystemExit(f"error: {f} is missing; run: python -m curate.bench.real_pairs verifier --rules "
                             f"--set {which} --half tuning --negatives {negatives_as} --out {out}")
        res[which] = json.loads(f.read_text())
    return choose(res["band"], res["first"])
