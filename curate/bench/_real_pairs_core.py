"""The labelled real pairs and how a pair decision scores on them: the CSV, the halves by
image-series component, recall / pair precision, and the judging grids (the public face
is :mod:`curate.bench.real_pairs`)."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from curate.bench._real_pairs_mine import TRAIN, global_row, read_candidates, split_index
from curate.data.tensors import hwc_uint8_to_nchw

DATA = Path(__file__).resolve().parent / "data" / "cifar10_pairs.csv"
#: A second, fresh reporting set: judged after every setting was chosen, of images apart from
#: DATA's image series (:func:`fresh_exclusion`); every row's half is "reporting".
DATA_FRESH = Path(__file__).resolve().parent / "data" / "cifar10_pairs_fresh.csv"
COLUMNS = ("split_a", "index_a", "split_b", "index_b", "label", "half", "kind")
#: Every judged CSV of the data folder, in the order it was judged: a sample drawn apart from
#: "every pair judged before" it (:func:`judged_pairs`) draws the same pairs again later.
JUDGED_IN_ORDER = ("cifar10_pairs.csv", "cifar10_pairs_fresh.csv", "cifar10_pairs_band.csv",
                   "cifar10_pairs_band_fresh.csv", "cifar10_pairs_band_fresh2.csv", "cifar10_pairs_option_audit.csv",
                   "cifar10_pairs_default_audit.csv", "cifar10_pairs_verifier_train.csv",
                   "cifar10_pairs_finetuned_audit.csv")
HALVES = ("tuning", "reporting")
#: distance bins of the judging sample: (low, high, pairs per kind); the last bin holds
#: only each image's nearest candidates (look-alikes the verification rejects)
BINS = ((0.0, 0.1, 80), (0.1, 0.2, 110), (0.2, 0.3, 110), (0.3, 0.4, 80), (0.4, 0.6, 60))
#: the fresh set's bins: half of each
BINS_FRESH = tuple((lo, hi, n // 2) for lo, hi, n in BINS)


# ------------------------------------------------------------------ the pair list ---

def load_pairs(path: Path | str = DATA, half: str | None = None, labels=(0, 1)) -> list[dict]:
    """The labelled pairs (rows of COLUMNS; ``a``, ``b`` global rows added), optionally one half."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            r["label"] = int(r["label"])
            r["a"], r["b"] = global_row(r["split_a"], r["index_a"]), global_row(r["split_b"], r["index_b"])
            if (half is None or r["half"] == half) and r["label"] in labels:
                out.append(r)
    return out


def judged_pairs(before: str | None = None) -> set[tuple[int, int]]:
    """Every pair (a, b), a < b, of the judged CSVs (of those judged before the file named
    ``before``, one of :data:`JUDGED_IN_ORDER`), unsure ones included."""
    names = JUDGED_IN_ORDER if before is None else JUDGED_IN_ORDER[:JUDGED_IN_ORDER.index(before)]
    return {(min(r["a"], r["b"]), max(r["a"], r["b"])) for n in names if (DATA.parent / n).is_file()
            for r in load_pairs(DATA.parent / n, labels=(-1, 0, 1))}


def pair_kind(a: int, b: int) -> str:
    """train-train, test-train or test-test of two global rows (dedupe searches all 60,000
    images together)."""
    return ("train-train", "test-train", "test-test")[int(a >= TRAIN) + int(b >= TRAIN)]


def write_judged(rows: list[dict], path: Path | str) -> None:
    """Rows (a, b, label 1 / 0 / -1, half) -> the CSV of COLUMNS, unsure rows kept (as -1),
    sorted by half then pair."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in sorted(rows, key=lambda r: (r["half"], r["a"], r["b"])):
            w.writerow([*split_index(r["a"]), *split_index(r["b"]), r["label"], r["half"], pair_kind(r["a"], r["b"])])


def components(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """{node: smallest node of its connected component} of an undirected pair list."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def half_of(root: int) -> str:
    """The half of a component named by its smallest global row: a hash, so no setting
    and no label decides it."""
    h = hashlib.sha1(f"cifar10:{root}".encode()).digest()
    return HALVES[h[0] % 2]


def assign_halves(rows: list[dict]) -> list[dict]:
    """Set ``half`` on every row by the component (over all judged pairs, unsure ones
    included) that its images belong to: an image series never straddles the halves."""
    comp = components([(r["a"], r["b"]) for r in rows])
    for r in rows:
        r["half"] = half_of(comp[r["a"]])
    return rows


def write_pairs(rows: list[dict], path: Path | str = DATA) -> None:
    """Rows (with a, b, label, half) -> the CSV of COLUMNS, sorted, unsure rows left out."""
    keep = sorted((r for r in rows if r["label"] in (0, 1)), key=lambda r: (r["a"], r["b"]))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in keep:
            kind = "test-train" if max(r["a"], r["b"]) >= TRAIN else "train-train"
            w.writerow([*split_index(r["a"]), *split_index(r["b"]), r["label"], r["half"], kind])


# --------------------------------------------------------------- the evaluation ---

def evaluate(distances, labels, threshold: float) -> dict:
    """Decision ``distance <= threshold`` on labelled pairs: recall of the positives, pair
    precision (judged negatives decided as duplicates count as false positives)."""
    return {"threshold": threshold, **evaluate_hits(np.asarray(distances, dtype=np.float64) <= threshold, labels)}


def evaluate_hits(hit, labels) -> dict:
    """Recall / pair precision of a yes/no decision on labelled pairs."""
    h, y = np.asarray(hit, bool), np.asarray(labels)
    tp, fp, pos = int((h & (y == 1)).sum()), int((h & (y == 0)).sum()), int((y == 1).sum())
    return {"positives": pos, "negatives": int((y == 0).sum()), "tp": tp, "fp": fp,
            "recall": tp / pos if pos else float("nan"), "precision": tp / (tp + fp) if tp + fp else float("nan")}


def distribution(distances, labels, qs=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)) -> dict:
    """Quantiles of the distances per label (1, 0)."""
    d, y = np.asarray(distances, dtype=np.float64), np.asarray(labels)
    return {int(c): {f"q{int(round(q * 100)):02d}": float(np.quantile(d[y == c], q)) for q in qs}
            for c in (1, 0) if (y == c).any()}


def best_threshold(distances, labels, min_precision: float = 0.95) -> dict:
    """The largest threshold whose pair precision stays >= min_precision (a tuning aid)."""
    d = np.asarray(distances, dtype=np.float64)
    best = evaluate(d, labels, -1.0)
    for t in np.unique(d):
        e = evaluate(d, labels, float(t))
        if e["precision"] >= min_precision:
            best = e
    return best


def aligned(canvases: np.ndarray, rows: list[dict]) -> np.ndarray:
    """(len(rows),) exact aligned distances of the default descriptor of the rows' pairs."""
    from curate.bench._real_pairs_mine import aligned_distances

    pairs = np.array([(r["a"], r["b"]) for r in rows], dtype=np.int64).reshape(-1, 2)
    return aligned_distances(canvases, pairs, refine_below=np.inf, progress=False)


def search(keys: np.ndarray, canvases: np.ndarray, rows: list[dict], **kw):
    """:func:`curate.duplicates.find_pairs` with every image of the rows a query among all n
    images (keys (n, d), canvases), with :func:`curate.brain.dedupe`'s defaults for the
    descriptor unless ``kw`` overrides them (``ratio``, ``relative``, ``threshold``, ``k``;
    ``embeddings``: the copy embedding's (e, em) of the n images, none by default)."""
    import inspect

    from curate.brain import dedupe
    from curate.duplicates import Descriptor, find_pairs
    from curate.duplicates.choices import DEFAULT_THRESHOLD
    from curate.duplicates.search import reference_sample

    defaults = inspect.signature(dedupe).parameters
    opts = {"threshold": DEFAULT_THRESHOLD["descriptor"], **{k: defaults[k].default for k in ("k", "relative", "ratio")}}
    opts.update(kw)
    queries = np.unique([i for r in rows for i in (r["a"], r["b"])])
    return find_pairs(keys, canvases, queries, opts.pop("threshold"), descriptor=Descriptor(),
                      reference=reference_sample(keys), **opts)


def collection(rows: list[dict], n: int, others: int) -> tuple[np.ndarray, list[dict]]:
    """The rows' images plus ``others`` of the n images drawn at random (seed 0; 0: all n):
    their indices (m,) and the rows renumbered into them."""
    if not others:
        return np.arange(n), rows
    mine = np.unique([i for r in rows for i in (r["a"], r["b"])])
    sub = np.concatenate([mine, np.setdiff1d(np.random.default_rng(0).permutation(n)[:others], mine)])
    pos = {g: i for i, g in enumerate(sub.tolist())}
    return sub, [{**r, "a": pos[r["a"]], "b": pos[r["b"]]} for r in rows]


def decided(keys: np.ndarray, canvases: np.ndarray, rows: list[dict], **kw) -> tuple[np.ndarray, dict]:
    """Which of the rows' pairs the whole search decides are duplicates, end to end: every
    image of the rows is a query among all n images (keys (n, d), canvases), with
    :func:`curate.brain.dedupe`'s defaults for the descriptor unless ``kw`` overrides them
    (``ratio``, ``relative``, ``threshold``, ``k``). A pair whose images are not each
    other's candidates is not found. Returns (len(rows),) bool and the search's summary."""
    res = search(keys, canvases, rows, **kw)
    found = {tuple(p) for p in res.pairs.tolist()}
    hit = np.array([(min(r["a"], r["b"]), max(r["a"], r["b"])) in found for r in rows])
    settings = {k: v for k, v in kw.items() if k not in ("embeddings", "verifier")}
    return hit, {"threshold_applied": res.threshold, "background": res.background, "by_ratio": res.by_ratio,
                 "by_embedding": res.by_embedding, "embedding": kw.get("embeddings") is not None,
                 "by_verifier": res.by_verifier, "verifier": kw.get("verifier") is not None,
                 "pairs_found": len(res.pairs), **settings}


def shipped_embeddings(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shipped copy embedding (e, em) (n, 128) of uint8 (n, 32, 32, 3) images."""
    from curate.duplicates.copy_embedding import CopyEmbedding

    return CopyEmbedding().embed(hwc_uint8_to_nchw(images))


# ------------------------------------------------------------------ the grids ---

def fresh_exclusion(candidates: list[dict], labelled: list[dict], reach: float = 0.35) -> set[int]:
    """Images a fresh set must not touch: those of every component of the candidate pairs
    within ``reach`` (the ratio test's band end) that holds an already labelled image, so a
    fresh pair shares no image series with the labelled ones."""
    comp = components([(r["a"], r["b"]) for r in candidates if r["distance"] <= reach])
    seen = {g for r in labelled for g in (r["a"], r["b"])}
    bad = {comp[g] for g in seen if g in comp}
    return seen | {g for g, c in comp.items() if c in bad}


def in_bin(r: dict, i: int, bins=BINS) -> bool:
    """Whether candidate row ``r`` belongs to the judging pool of distance bin ``i``: the last
    bin only from each image's nearest key or thumbnail neighbour."""
    lo, hi, _ = bins[i]
    return lo <= r["distance"] < hi and (i < len(bins) - 1 or r["key_rank"] == "0" or r["thumb_rank"] == "0")


def pool_cells(rows: list[dict], candidates: list[dict], bins=BINS,
               exclude: set[int] = frozenset()) -> tuple[list[tuple[str, int]], dict]:
    """Each labelled pair's (kind, distance bin) of :func:`judging_sample`, by its mined
    distance, and each cell's pool size (candidate pairs in it, ``exclude`` applied)."""
    mined = {(min(r["a"], r["b"]), max(r["a"], r["b"])): r for r in candidates}
    pool: dict = {}
    for r in candidates:
        if r["a"] in exclude or r["b"] in exclude:
            continue
        for i in range(len(bins)):
            if in_bin(r, i, bins):
                pool[(r["kind"], i)] = pool.get((r["kind"], i), 0) + 1
    cells = []
    for r in rows:
        m = mined[(min(r["a"], r["b"]), max(r["a"], r["b"]))]
        cells.append((m["kind"], next(i for i in range(len(bins)) if in_bin(m, i, bins))))
    return cells, pool


def pool_weights(rows: list[dict], candidates: list[dict], bins=BINS, exclude: set[int] = frozenset()) -> np.ndarray:
    """(len(rows),) Horvitz-Thompson weights of labelled pairs drawn by :func:`judging_sample`:
    a pair of kind k in distance bin b stands for N_kb / n_kb candidate pairs (N: the bin's
    pool, ``exclude`` applied; n: its labelled pairs, unsure ones gone). With them, recall and
    precision estimate those over the whole candidate pool -- CIFAR-10's own mix of easy and
    hard pairs -- instead of the sample's, whose bins were drawn at fixed sizes."""
    cells, pool = pool_cells(rows, candidates, bins, exclude)
    n = {c: cells.count(c) for c in set(cells)}
    return np.array([pool[c] / n[c] for c in cells], dtype=np.float64)


def weighted_interval(hit, labels, cells, weights, boot: int = 2000, seed: int = 0) -> dict:
    """95 % intervals of :func:`evaluate_weighted`'s recall and precision: a stratified
    bootstrap (labelled pairs resampled within each cell, whose weight stays N / n)."""
    h, y, w = np.asarray(hit, bool), np.asarray(labels), np.asarray(weights, dtype=np.float64)
    groups = {}
    for i, c in enumerate(cells):
        groups.setdefault(c, []).append(i)
    groups = [np.array(g) for g in groups.values()]
    rng = np.random.default_rng(seed)
    rec, prec = [], []
    for _ in range(boot):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        e = evaluate_weighted(h[idx], y[idx], w[idx])
        rec.append(e["recall"])
        prec.append(e["precision"])
    return {"recall_ci": [float(np.nanpercentile(rec, 2.5)), float(np.nanpercentile(rec, 97.5))],
            "precision_ci": [float(np.nanpercentile(prec, 2.5)), float(np.nanpercentile(prec, 97.5))]}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a share k / n."""
    p = k / n
    mid, half = (p + z * z / (2 * n)), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)


def evaluate_weighted(hit, labels, weights) -> dict:
    """Recall / precision of a yes/no decision with each labelled pair weighted
    (:func:`pool_weights`): estimates over the population the sample was drawn from."""
    h, y, w = np.asarray(hit, bool), np.asarray(labels), np.asarray(weights, dtype=np.float64)
    tp, fp, pos = float(w[h & (y == 1)].sum()), float(w[h & (y == 0)].sum()), float(w[y == 1].sum())
    return {"positives": pos, "tp": tp, "fp": fp, "recall": tp / pos if pos else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan")}


def judging_sample(candidates: Path, seed: int = 0, bins=BINS, exclude: set[int] = frozenset()) -> list[dict]:
    """Candidates to judge: per kind and distance bin, a seeded sample (bin sizes in BINS);
    the last bin only from each image's nearest key or thumbnail neighbour; no pair with an
    image in ``exclude``."""
    rows = [r for r in read_candidates(candidates) if r["a"] not in exclude and r["b"] not in exclude]
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("test-train", "train-train"):
        for i, (lo, hi, n) in enumerate(bins):
            pool = [r for r in rows if r["kind"] == kind and in_bin(r, i, bins)]
            take = rng.choice(len(pool), min(n, len(pool)), replace=False) if pool else []
            out += [pool[j] for j in sorted(take)]
    order = rng.permutation(len(out))  # batches mix bins, so no batch reads as 'all yes'
    return [out[j] for j in order]


def render_grid(images: np.ndarray, rows: list[dict], path: Path, first: int, scale: int = 4, cols: int = 3) -> None:
    """One PNG: pair ``first + i`` side by side (a left, b right, ``scale``x nearest), numbered."""
    from PIL import Image, ImageDraw

    side = images.shape[1] * scale
    cw, ch = 2 * side + 6 + 14, side + 16
    n_rows = -(-len(rows) // cols)
    canvas = Image.new("RGB", (cols * cw, n_rows * ch), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, r in enumerate(rows):
        x, y = (i % cols) * cw, (i // cols) * ch
        for k, g in enumerate((r["a"], r["b"])):
            im = Image.fromarray(images[g]).resize((side, side), Image.NEAREST)
            canvas.paste(im, (x + k * (side + 6), y + 14))
        sa, ia = split_index(r["a"])
        sb, ib = split_index(r["b"])
        draw.text((x + 2, y + 1), f"#{first + i} {sa}:{ia} | {sb}:{ib}", fill=(0, 0, 0))
    canvas.save(path)


def write_grids(images: np.ndarray, sample: list[dict], folder: Path, per: int = 30) -> list[Path]:
    """Batches of ``per`` pairs: ``batch_NN.png`` and ``batch_NN.csv`` (with an empty label)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for b, s in enumerate(range(0, len(sample), per)):
        rows = sample[s:s + per]
        png = folder / f"batch_{b:02d}.png"
        render_grid(images, rows, png, s)
        with open(folder / f"batch_{b:02d}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("n", "split_a", "index_a", "split_b", "index_b", "kind", "distance", "label"))
            for i, r in enumerate(rows):
                w.writerow((s + i, *split_index(r["a"]), *split_index(r["b"]), r["kind"], r["distance"], ""))
        paths.append(png)
    return paths


def collect(folder: Path, half: str | None = None) -> list[dict]:
    """Judged batch CSVs -> rows (a, b, label 1/0/-1 for unsure), halves assigned (by image
    series; ``half``: every row in that one)."""
    rows = []
    for p in sorted(folder.glob("batch_*.csv")):
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                lab = r["label"].strip()
                if lab == "":
                    continue
                rows.append({"a": global_row(r["split_a"], r["index_a"]), "b": global_row(r["split_b"], r["index_b"]),
                             "label": {"1": 1, "0": 0}.get(lab, -1)})
    if half is not None:
        if half not in HALVES:
            raise ValueError(f"half must be one of {HALVES}, got {half!r}")
        return [{**r, "half": half} for r in rows]
    return assign_halves(rows)
