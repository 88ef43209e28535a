"""The band set: real pairs where the aligned distance cannot decide, drawn by distance *and*
by the copy embedding's cosine.

Among CIFAR-10's mined candidates at aligned distance 0.2-0.45 there are tens of thousands
of look-alikes and a few percent of same-shot pairs; weighted back to the whole pool, most
same-shot pairs live there (docs/near-duplicates.md), but a sample drawn by distance alone
holds a handful of them -- too few to choose a rule on. So the band set draws a seeded
sample of ``PER`` pairs from every cell of kind x ``DIST_BINS`` x ``COS_BINS`` (the shipped
embedding's cosine of the pair, the better of it and its mirror image), from the mined
candidates apart from both labelled sets' images and their copies. Each labelled pair stands for its
cell's pool / its cell's labelled pairs (Horvitz-Thompson), so recall and precision
estimate those over the whole pool as well as over the sample. Judged by the same rule;
halves by image-series component as the first set (:func:`_real_pairs_core.assign_halves`).

``python -m curate.bench.real_pairs grids --band --out DIR`` (after ``mine``) writes the
judging grids to ``DIR/grids_band``; ``collect --band`` writes ``DATA_BAND``; ``band
--half tuning|reporting`` measures the rules of :data:`RULES` end to end.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curate.bench import _real_pairs_core as R
from curate.bench import _rejudge as J
from curate.duplicates.choices import COSINE_HIGH

DATA_BAND = R.DATA.parent / "cifar10_pairs_band.csv"
#: A fresh band set, drawn after the prototype pair verifier's rule was chosen: test-train
#: pairs only (the verifier trained on mined train-train pairs as negatives), apart from
#: every other set's images; every row "reporting".
DATA_BAND_FRESH = R.DATA.parent / "cifar10_pairs_band_fresh.csv"
#: A second fresh band set, drawn after the second verifier's rule was chosen (its negatives
#: edited as its positives): test-train pairs apart from every other set's images, the first
#: fresh band set's included; every row "reporting".
DATA_BAND_FRESH2 = R.DATA.parent / "cifar10_pairs_band_fresh2.csv"
#: the fresh band sets in the order they were drawn (round 1, 2, ...: ``grids --band --fresh N``)
BAND_FRESH = (DATA_BAND_FRESH, DATA_BAND_FRESH2)
#: the labelled sets by name (``--set``)
SETS = {"band": DATA_BAND, "band_fresh": DATA_BAND_FRESH, "band_fresh2": DATA_BAND_FRESH2, "first": R.DATA,
        "fresh": R.DATA_FRESH}
#: the band sets by name, each with its round: how many band sets its pool stays apart from
BAND_ROUND = {"band": 0, "band_fresh": 1, "band_fresh2": 2}
#: aligned-distance bins: the ratio test's band split in two, and beyond its reach (the
#: mined distances are exact up to 0.45)
DIST_BINS = ((0.2, 0.3), (0.3, 0.35), (0.35, 0.45))
#: cosine bins of the shipped copy embedding (the rule's floor 0.7 and high 0.9 are edges)
COS_BINS = ((-1.0, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))
PER = 14
PER_FRESH = 20  # the fresh band set: one kind, so more per cell
KINDS = ("test-train", "train-train")


def cell(distance: float, cos: float, kind: str) -> tuple[str, int, int] | None:
    """(kind, distance bin, cosine bin) of a pair, None outside the bins."""
    d = next((i for i, (lo, hi) in enumerate(DIST_BINS) if lo <= distance < hi), None)
    c = next((i for i, (lo, hi) in enumerate(COS_BINS) if lo <= cos < hi), None)
    return None if d is None or c is None else (kind, d, c)


def embeddings(images: np.ndarray, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The shipped copy embedding (e, em) of all images (cached in ``out/embedding.npz``)."""
    f = out / "embedding.npz"
    if f.is_file():
        z = np.load(f)
        return z["e"], z["em"]
    e, em = R.shipped_embeddings(images)
    np.savez(f, e=e, em=em)
    return e, em


def pool(candidates: list[dict], e: np.ndarray, em: np.ndarray, exclude: set[int]) -> list[dict]:
    """The candidate rows inside the bins, apart from ``exclude``, each with its cosine and cell."""
    from curate.duplicates.copy_embedding import cosine

    rows = [r for r in candidates if DIST_BINS[0][0] <= r["distance"] < DIST_BINS[-1][1]
            and r["a"] not in exclude and r["b"] not in exclude]
    ab = np.array([(r["a"], r["b"]) for r in rows], dtype=np.int64).reshape(-1, 2)
    cos = cosine(e, em, ab[:, 0], ab[:, 1]) if len(ab) else np.zeros(0)
    out = []
    for r, c in zip(rows, cos.tolist()):
        k = cell(r["distance"], c, r["kind"])
        if k is not None:
            out.append({**r, "cos": c, "cell": k})
    return out


def exclusion(candidates: list[dict], fresh: int = 0) -> set[int]:
    """Images of both labelled sets (with ``fresh`` >= 1: of the band set too, >= 2: of the
    first fresh band set too, and so on) and of their series of copies (joined by candidates within the threshold, 0.2). Not the fresh set's
    reach (0.35): in the band, chains of look-alikes join a fifth of CIFAR-10 to the labelled
    images, and the pool would lose its crowded part -- where a decision is hardest."""
    from curate.duplicates.choices import DEFAULT_THRESHOLD

    labelled = R.load_pairs(R.DATA) + R.load_pairs(R.DATA_FRESH)
    for path in ((DATA_BAND,) + BAND_FRESH)[:int(fresh)]:
        labelled += R.load_pairs(path)
    return R.fresh_exclusion(candidates, labelled, DEFAULT_THRESHOLD["descriptor"])


def sample(pooled: list[dict], seed: int = 0, per: int = PER) -> list[dict]:
    """A seeded sample of ``per`` pairs per cell (fewer where the cell holds fewer), shuffled
    so that no judging batch reads as one cell."""
    rng = np.random.default_rng(seed)
    by_cell: dict = {}
    for r in pooled:
        by_cell.setdefault(r["cell"], []).append(r)
    out = []
    for k in sorted(by_cell):
        rows = by_cell[k]
        out += [rows[j] for j in sorted(rng.choice(len(rows), min(per, len(rows)), replace=False))]
    return [out[j] for j in rng.permutation(len(out))]


def weights(rows: list[dict], pooled: list[dict]) -> tuple[list, np.ndarray]:
    """Each labelled row's cell (by its mined distance and cosine) and Horvitz-Thompson
    weight: the cell's pool / the cell's labelled pairs (unsure ones gone)."""
    by_pair = {(min(r["a"], r["b"]), max(r["a"], r["b"])): r["cell"] for r in pooled}
    size: dict = {}
    for r in pooled:
        size[r["cell"]] = size.get(r["cell"], 0) + 1
    cells = [by_pair[(min(r["a"], r["b"]), max(r["a"], r["b"]))] for r in rows]
    n = {c: cells.count(c) for c in set(cells)}
    return cells, np.array([size[c] / n[c] for c in cells], dtype=np.float64)


#: Rules measured by :func:`decisions`: (name, band high, beyond reach, beyond cosine).
#: A band pair (0.2 < d <= 0.35) is kept as shipped (ratio test and cosine >= 0.7, or cosine
#: >= ``high``); a pair beyond it (0.35 < d <= ``beyond``) when its cosine is >= ``beyond_cos``.
RULES = [("shipped", COSINE_HIGH, None, None)] + [
    (f"high {h}", h, None, None) for h in (0.8, 0.85)] + [
    (f"high {h}, beyond {b} at {c}", h, b, c) for h in (0.85, 0.9) for b in (0.4, 0.45) for c in (0.85, 0.9, 0.95)]


def decisions(keys, canvases, e, em, rows: list[dict], rules=RULES, verifier=None, verifier_rules=(), **kw) -> dict:
    """{rule name: (len(rows),) bool} end to end: every image of ``rows`` a query among all n
    images with ``cb.dedupe``'s defaults (``kw`` overrides them, as in
    :func:`_real_pairs_core.search`); the band and beyond judged per rule. With ``verifier``
    (a function (m, 2) pairs -> (m,) scores) also each of ``verifier_rules`` (name, band
    score, reach, beyond score[, cosine floor]): a band pair is kept as shipped or when its
    score is >= the band score, a pair beyond the band (up to reach) when its score is >= the
    beyond score; with a floor, a score counts only where the pair's cosine is >= it."""
    from curate.duplicates.choices import COSINE_FLOOR, DEFAULT_THRESHOLD, RATIO_REACH
    from curate.duplicates.copy_embedding import cosine

    t = DEFAULT_THRESHOLD["descriptor"]
    band_end = t * RATIO_REACH
    far = max([r[2] for r in list(rules) + list(verifier_rules) if r[2] is not None] + [band_end])
    test = R.search(keys, canvases, rows, **kw)  # the ratio test alone: which band pairs it keeps
    wide = R.search(keys, canvases, rows, **{**kw, "ratio": 1e9, "reach": far / t})  # every verified pair up to far
    kept = {tuple(p) for p in test.pairs.tolist()}
    dist = dict(zip(map(tuple, wide.pairs.tolist()), wide.distances.tolist()))
    beyond = [p for p, d in dist.items() if d > t]
    ab = np.array(beyond, dtype=np.int64).reshape(-1, 2)
    cos = dict(zip(beyond, cosine(e, em, ab[:, 0], ab[:, 1]).tolist())) if len(ab) else {}
    within = {p for p, d in dist.items() if d <= t} | {p for p in kept if p not in dist}
    key = [(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in rows]
    v = dict(zip(beyond, np.asarray(verifier(ab), dtype=np.float64).tolist())) if verifier and len(ab) else {}

    def cosine_rule(high, reach, beyond_cos):
        return (lambda p: (p in kept and cos[p] >= COSINE_FLOOR) or cos[p] >= high,
                lambda p: reach is not None and dist[p] <= reach and cos[p] >= beyond_cos)

    def verifier_rule(band_v, reach, beyond_v, floor=-np.inf):  # a score counts only at cosine >= floor
        shipped_band, _ = cosine_rule(COSINE_HIGH, None, None)
        return (lambda p: shipped_band(p) or (v[p] >= band_v and cos[p] >= floor),
                lambda p: reach is not None and dist[p] <= reach and v[p] >= beyond_v and cos[p] >= floor)

    judged = [(name, cosine_rule(*r)) for name, *r in rules]
    if verifier is not None:
        judged += [(name, verifier_rule(*r)) for name, *r in verifier_rules]
    out = {}
    for name, (in_band, past_band) in judged:
        found = within | {p for p in beyond if (in_band(p) if dist[p] <= band_end else past_band(p))}
        out[name] = np.array([k in found for k in key])
    return out


def load(root: Path, out: Path):
    """All 60,000 images, their keys and canvases, and their shipped embeddings (e, em), from
    the caches in ``out``."""
    from curate.bench import _real_pairs_mine as M

    images = M.load_all(root, out, progress=False)
    keys, canvases = M.describe_all(images, out, progress=False)
    return images, keys, canvases, *embeddings(images, out)


def scored(hits: dict, rows: list[dict], which: str, out: Path, e: np.ndarray, em: np.ndarray) -> dict:
    """Recall / pair precision of each rule's hits on the rows, and for a band set also
    weighted to its pool with 95 % intervals."""
    y = np.array([r["label"] for r in rows])
    res = {"rules": {k: R.evaluate_hits(h, y) for k, h in hits.items()}}
    ceiling = J.noise_ceiling(SETS[which], rows[0]["half"]) if rows else None
    if ceiling is not None:  # beside every score, what a second look at the labels scores
        res["noise_ceiling"] = ceiling
    if which in BAND_ROUND:
        cands = R.read_candidates(out / "candidates.csv")
        cells, w = weights(rows, pool(cands, e, em, exclusion(cands, BAND_ROUND[which])))
        res["pool_weighted"] = {k: {**R.evaluate_weighted(h, y, w), **R.weighted_interval(h, y, cells, w)}
                                for k, h in hits.items()}
    return res


def measure(root: Path, out: Path, half: str, which: str = "band", rules=RULES) -> dict:
    """The rules on one half of a labelled set (``which``: a name of :data:`SETS`) among
    all 60,000 images: recall / pair precision on the sample, and for a band set also
    pool-weighted with 95 % intervals; grids of the first rule's misses and false hits
    (``DIR/band_misses_<set>_<half>.png``)."""
    rows = R.load_pairs(SETS[which], half)
    images, keys, canvases, e, em = load(root, out)
    hits = decisions(keys, canvases, e, em, rows, rules)
    y = np.array([r["label"] for r in rows])
    res = {"set": which, "half": half, "pairs": len(rows), "positives": int(y.sum()),
           **scored(hits, rows, which, out, e, em)}
    # what the shipped rule gets wrong, for a person to look at (the mined distance's order)
    shipped = hits[rules[0][0]]
    d = R.aligned(canvases, rows)
    for name, pick in (("misses", (y == 1) & ~shipped), ("false_hits", (y == 0) & shipped)):
        idx = np.nonzero(pick)[0][np.argsort(d[pick])]
        if len(idx):
            R.render_grid(images, [rows[i] for i in idx], out / f"band_{name}_{which}_{half}.png", 0)
            res[name] = [(f"{rows[i]['split_a']}:{rows[i]['index_a']}", f"{rows[i]['split_b']}:{rows[i]['index_b']}",
                          round(float(d[i]), 4)) for i in idx]
    (out / f"band_{which}_{half}.json").write_text(json.dumps(res, indent=1))
    return res
