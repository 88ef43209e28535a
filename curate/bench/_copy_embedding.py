"""A learned copy-detection embedding, measured against the aligned distance on the real pairs.

``python -m curate.bench.real_pairs embedding --cifar-root ../shared/data/cifar10 --out DIR
[--edits real|strong] [--steps 3000]``

Issue 20 suggested it as the way past the aligned distance: a small network trained by
instance discrimination, with the realistic edit model as its augmentation, so that an
image and its edited copies land close and every other image (look-alikes included) far.

1. views: ``VIEWS`` edited copies of each of CIFAR-10's 50,000 training images, copy v of
   image i drawn from ``default_rng((v, i))`` (:func:`curate.duplicates.edits.draw_real`
   with the ranges of ``--edits``); view 0 of a pair may be the image itself;
2. train: NT-Xent (temperature ``TAU``) over batches of ``BATCH`` images, two of their views
   each (the second mirrored for half the batches), AdamW with a one-cycle schedule;
3. measure: cosine similarity of every labelled pair of a half (the better of the pair and
   its mirror image), AUROC of the same shot against look-alikes overall and in bands of
   the aligned distance, beside the aligned distance's own AUROC in the same bands.

4. combined (:func:`combined`): the shipped decision with the cosine inside the ratio
   test's band, end to end, over a grid of rules.

``--edits strong --steps 3000`` wrote the weights that :func:`curate.brain.dedupe` ships
(:mod:`curate.duplicates.copy_embedding`, which holds the network and its input path; this
module only trains and measures). Weights are written as safetensors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curate.duplicates import edits
from curate.duplicates.choices import DEFAULT_THRESHOLD, RATIO_REACH
from curate.duplicates.copy_embedding import WIDTH, cosine, load, network
from curate.duplicates.copy_embedding import standardise as _standardise

VIEWS, BATCH, TAU, LR, TRAIN = 4, 256, 0.1, 2e-3, 50_000
#: Look-alike batches (``--batches lookalike``): SEEDS random images per batch, each with up to
#: PER_SEED of its mined candidates farther than LOOKALIKE_FAR in aligned distance (look-alikes
#: of a crowd, not copies); candidates within it are masked out of the loss (possible copies).
SEEDS, PER_SEED, LOOKALIKE_FAR = 32, 7, 0.45
BATCHES = ("random", "lookalike")
#: Wider ranges than the real pairs' fit (:data:`curate.duplicates.edits.REAL`): strong crops,
#: shifts, colour casts, gamma and blur, so that the network learns more invariance than the
#: edit model's typical copy needs.
STRONG = {"crop_mean": 0.12, "crop_max": 0.3, "shift_p": (0.4, 0.4, 0.2), "mirror": 0.1, "contrast_mean": 0.15,
          "brightness_sd": 20.0, "channel_sd": 0.12, "gamma_sd": 0.3, "blur": (-1.2, 1.2)}
#: Heavier still, aimed at what the band set's same-shot pairs show (crops of 20-35 % with a
#: recolouring): crops drawn larger on average, stronger colour casts.
HEAVY = {**STRONG, "crop_mean": 0.2, "crop_max": 0.35, "channel_sd": 0.2}
RANGES = {"real": None, "strong": STRONG, "heavy": HEAVY}
_T = DEFAULT_THRESHOLD["descriptor"]
_BAND_END = round(_T * RATIO_REACH, 6)
#: Bands of the aligned distance: within the threshold, the ratio test's band, beyond it.
BANDS = ((0.0, _T), (_T, _BAND_END), (_BAND_END, 0.5), (0.5, np.inf))
#: (reach, floor, high) of :func:`combined` (the shipped network's choice): the ratio test
#: alone is (reach, 0, inf), the embedding alone in the band (reach, inf, high).
GRID = [(RATIO_REACH, f, h) for f, h in [(0.0, np.inf), (np.inf, 0.8), (np.inf, 0.85), (np.inf, 0.9)] + [
    (f, h) for f in (0.0, 0.5, 0.6, 0.7) for h in (0.85, 0.9, 0.95, np.inf) if (f, h) != (0.0, np.inf)]]
#: (reach, floor, high) of :func:`combined` for comparing trained networks (pre-registered
#: 2026-12-08 before any of them was measured end to end: docs/near-duplicates.md): the ratio
#: test's reach as shipped and to 0.45, with and without a floor, five highs.
GRID_NETWORKS = [(r, f, h) for r in (RATIO_REACH, 2.25) for f in (0.0, 0.6, 0.7, 0.8)
                 for h in (0.85, 0.9, 0.93, 0.95, np.inf)]


def standardise(u8: np.ndarray):
    """uint8 (B, 32, 32, 3) -> float32 (B, 3, 32, 32), each image to mean 0 and SD 1 (the
    shipped network's input: :func:`curate.duplicates.copy_embedding.standardise`)."""
    import torch

    return _standardise(torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255)


def views(images: np.ndarray, out: Path, kind: str, progress=True) -> np.ndarray:
    """Step 1: (VIEWS, TRAIN, 32, 32, 3) uint8 edited copies of the training images (cached)."""
    from curate._progress import progress as bar

    f = out / f"embedding_views_{kind}.npy"
    if f.is_file():
        return np.load(f)
    v = np.empty((VIEWS, TRAIN, *images.shape[1:]), np.uint8)
    with bar(VIEWS * TRAIN, f"editing copies ({kind})", progress) as advance:
        for k in range(VIEWS):
            for i in range(TRAIN):
                v[k, i] = edits.apply_real(images[i], edits.draw_real(np.random.default_rng((k, i)), RANGES[kind]))
                if (i + 1) % 1000 == 0:
                    advance(1000)
    np.save(f, v)
    return v


def optimise(opt, sched, loss) -> float:
    """One optimiser and schedule step on ``loss``; returns its value."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def lookalikes(candidates: list[dict], n: int, far: float = LOOKALIKE_FAR) -> tuple[list[np.ndarray], np.ndarray]:
    """Look-alike batches' material from ``mine``'s candidate rows among the first ``n``
    images: each image's candidates farther than ``far`` in aligned distance (look-alikes,
    not copies: (n,) arrays) and the codes ``min * n + max`` of the pairs within it (possible
    copies, never a negative)."""
    hard: list[list[int]] = [[] for _ in range(n)]
    near = []
    for r in candidates:
        a, b = r["a"], r["b"]
        if a >= n or b >= n:
            continue
        if r["distance"] > far:
            hard[a].append(b)
            hard[b].append(a)
        else:
            near.append(min(a, b) * n + max(a, b))
    return [np.unique(np.array(h, dtype=np.int64)) for h in hard], np.unique(np.array(near, dtype=np.int64))


def batch(rng, n: int, alike=None) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch's (BATCH,) image indices and, for look-alike batches (``alike``: what
    :func:`lookalikes` returns), the (BATCH, BATCH) mask of its pairs that must not count
    as negatives. Random batches: ``BATCH`` images at random. Look-alike batches: ``SEEDS``
    images at random, each with up to ``PER_SEED`` of its look-alikes, filled up at random."""
    if alike is None:
        return rng.choice(n, BATCH, replace=False), None
    hard, near = alike
    chosen, seen = [], set()
    for s in rng.choice(n, SEEDS, replace=False):
        for g in ([s, *rng.permutation(hard[s])[:PER_SEED]] if len(hard[s]) else [s]):
            if g not in seen:
                seen.add(g)
                chosen.append(g)
    while len(chosen) < BATCH:
        g = int(rng.integers(n))
        if g not in seen:
            seen.add(g)
            chosen.append(g)
    idx = np.array(chosen[:BATCH])
    mask = np.isin(np.minimum.outer(idx, idx) * n + np.maximum.outer(idx, idx), near)
    np.fill_diagonal(mask, False)
    return idx, mask


def train(images: np.ndarray, v: np.ndarray, steps: int, progress=True, width: int = WIDTH, alike=None):
    """Step 2: the trained network (seeded: the same images and views give the same weights).
    ``width``: the first layer's channels (the shipped network's 16); ``alike``: look-alike
    batches (:func:`lookalikes`) instead of random ones."""
    import torch
    import torch.nn.functional as F

    from curate._progress import progress as bar

    torch.manual_seed(0)
    net = network(width)
    opt = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    with bar(steps, "training the copy embedding", progress, fields=("loss",)) as advance:
        for _ in range(steps):
            idx, mask = batch(rng, v.shape[1], alike)
            a, b = rng.choice(len(v) + 1, 2, replace=False)  # 0: the image itself
            xa = v[a - 1, idx] if a else images[idx]
            xb = v[b - 1, idx] if b else images[idx]
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
            za, zb = net(standardise(xa)), net(standardise(xb))
            logits = za @ zb.T / TAU
            if mask is not None:  # a possible copy is neither the positive nor a negative
                logits = logits.masked_fill(torch.from_numpy(mask), float("-inf"))
            y = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
            advance(1, loss=optimise(opt, sched, loss))
    return net.eval()


def stem(kind: str, steps: int, width: int = WIDTH, batches: str = "random") -> str:
    """The file name (no suffix) of the network trained with these settings; the shipped
    network's settings keep their old name."""
    return (f"copy_embedding_{kind}_{steps}" + (f"_w{width}" if width != WIDTH else "")
            + (f"_{batches}" if batches != "random" else ""))


def load_network(out: Path, kind: str, steps: int, width: int = WIDTH, batches: str = "random"):
    """The network ``measure`` trained into ``out`` (None if there is none yet), in eval mode."""
    weights = out / f"{stem(kind, steps, width, batches)}.safetensors"
    return load(weights, width) if weights.is_file() else None


def embed(net, images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) embeddings of the images and of their mirror images."""
    import torch

    with torch.no_grad():
        e = [net(standardise(images[s:s + chunk])).numpy() for s in range(0, len(images), chunk)]
        m = [net(standardise(images[s:s + chunk, :, ::-1])).numpy() for s in range(0, len(images), chunk)]
    return np.concatenate(e), np.concatenate(m)


def measure(root: Path, out: Path, kind: str, steps: int, half: str = "tuning", width: int = WIDTH,
            batches: str = "random", which: str = "first") -> dict:
    """Steps 1-3 on one half of a labelled set (``which``: a name of
    :data:`curate.bench._real_pairs_band.SETS`; the network is cached in ``out``; look-alike
    batches need ``mine``'s candidates.csv there)."""
    from safetensors.torch import save_file
    from sklearn.metrics import roc_auc_score

    from curate.bench import _real_pairs_core as R
    from curate.bench import _real_pairs_mine as M
    from curate.bench._real_pairs_band import SETS

    if batches not in BATCHES:
        raise ValueError(f"batches must be one of {BATCHES}, got {batches!r}")
    images = M.load_all(root, out)
    net = load_network(out, kind, steps, width, batches)
    if net is None:
        alike = lookalikes(R.read_candidates(out / "candidates.csv"), TRAIN) if batches == "lookalike" else None
        net = train(images, views(images, out, kind), steps, width=width, alike=alike)
        save_file({k: t.contiguous() for k, t in net.state_dict().items()},
                  out / f"{stem(kind, steps, width, batches)}.safetensors")
    e, em = embed(net, images)
    rows = R.load_pairs(SETS[which], half)
    a, b = (np.array([r[k] for r in rows]) for k in ("a", "b"))
    y = np.array([r["label"] for r in rows])
    cos = cosine(e, em, a, b)
    _, canvases = M.describe_all(images, out, progress=False)
    d = R.aligned(canvases, rows)
    res = {"set": which, "half": half, "edits": kind, "steps": steps, "width": width, "batches": batches,
           "pairs": int(len(y)), "positives": int(y.sum()),
           "auroc_cosine": float(roc_auc_score(y, cos)), "auroc_aligned": float(roc_auc_score(y, -d)), "bands": []}
    for lo, hi in BANDS:
        m = (d > lo) & (d <= hi)
        band = {"aligned": [lo, hi], "pairs": int(m.sum()), "positives": int(y[m].sum())}
        if 0 < y[m].sum() < m.sum():
            band.update(auroc_cosine=float(roc_auc_score(y[m], cos[m])), auroc_aligned=float(roc_auc_score(y[m], -d[m])))
        res["bands"].append(band)
    res["cosine_at_precision_0.95"] = R.best_threshold(-cos, y, 0.95)
    (out / f"embedding_{stem(kind, steps, width, batches)}_{which}_{half}.json").write_text(json.dumps(res, indent=1))
    return res


def searches(keys, canvases, rows, reaches, cache: Path | None = None) -> dict:
    """What :func:`combined` needs from the search, which no network changes (cached in
    ``cache``, an .npz, when given): every image of ``rows`` a query among all n images; the
    pairs the ratio test keeps run to each of ``reaches`` (x threshold), and every verified
    pair up to the largest with its distance."""
    from curate.bench import _real_pairs_core as R

    reaches = sorted(set(reaches))
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if sorted(z["reaches"].tolist()) == reaches:
            return {"kept": {r: z[f"kept_{i}"] for i, r in enumerate(reaches)}, "wide": z["wide"],
                    "distances": z["distances"], "threshold": float(z["threshold"])}
    tests = [R.search(keys, canvases, rows, reach=r) for r in reaches]  # the ratio test to each reach
    wide = R.search(keys, canvases, rows, ratio=1e9, reach=reaches[-1])  # every verified pair, kept
    res = {"kept": {r: t.pairs for r, t in zip(reaches, tests)}, "wide": wide.pairs, "distances": wide.distances,
           "threshold": float(wide.threshold)}
    if cache is not None:
        np.savez(cache, reaches=np.array(reaches), wide=wide.pairs, distances=wide.distances,
                 threshold=wide.threshold, **{f"kept_{i}": t.pairs for i, t in enumerate(tests)})
    return res


def combined(found_by: dict, e, em, rows, grid, second=None) -> list[dict]:
    """The shipped decision with the embedding in the ratio test's band, end to end (every
    image of ``rows`` a query among all n images; ``found_by``: :func:`searches` of the rows
    to every reach of ``grid``): for a rule (reach, floor, high), a pair with threshold < d
    <= reach x threshold is a duplicate when the ratio test (run to that reach) keeps it and
    its cosine is >= ``floor``, or when its cosine is >= ``high``; pairs within the threshold
    as shipped. One entry per rule with recall and pair precision on the rows, and with
    ``second`` ((len(rows),) a second judging's labels, -1 unsure) also against the consensus
    (the pairs both judgings call the same way)."""
    from curate.bench import _real_pairs_core as R

    t = found_by["threshold"]
    dist = dict(zip(map(tuple, found_by["wide"].tolist()), found_by["distances"].tolist()))
    band = [p for p, d in dist.items() if d > t]
    ab = np.array(band, dtype=np.int64).reshape(-1, 2)
    cos = dict(zip(band, cosine(e, em, ab[:, 0], ab[:, 1]).tolist())) if len(ab) else {}
    y = np.array([r["label"] for r in rows])
    key = [(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in rows]
    out = []
    for reach, floor, high in grid:
        kept = {tuple(p) for p in found_by["kept"][reach].tolist()}
        within = kept - set(band)  # the pairs within the threshold, as shipped
        found = within | {p for p in band if dist[p] <= reach * t + 1e-9
                          and ((p in kept and cos[p] >= floor) or cos[p] >= high)}
        hit = np.array([k in found for k in key])
        out.append({"reach": reach, "floor": floor, "high": high, **R.evaluate_hits(hit, y),
                    "found": int((hit & (y == 1)).sum()), "false_hits": int((hit & (y == 0)).sum()),
                    "pairs_found": len(found)})
        if second is not None:
            agree = y == np.asarray(second)
            out[-1]["consensus"] = R.evaluate_hits(hit[agree], y[agree])
    return out


def measure_combined(root: Path, out: Path, kind: str, steps: int, half: str, collection: int, grid,
                     width: int = WIDTH, batches: str = "random", which: str = "first") -> dict:
    """:func:`combined` on one half of a labelled set (a name of
    :data:`curate.bench._real_pairs_band.SETS`) among all 60,000 images or the half's images
    plus ``collection`` others (as ``real_pairs measure --collection``), with the cached
    network."""
    from curate.bench import _real_pairs_core as R
    from curate.bench import _real_pairs_mine as M
    from curate.bench import _rejudge as J
    from curate.bench._real_pairs_band import SETS

    net = load_network(out, kind, steps, width, batches)
    if net is None:
        raise SystemExit(f"error: no such network in {out}; train it first: python -m curate.bench.real_pairs "
                         f"embedding --edits {kind} --steps {steps} --width {width} --batches {batches} --out {out}")
    images = M.load_all(root, out, progress=False)
    keys, canvases = M.describe_all(images, out, progress=False)
    sub, rows = R.collection(R.load_pairs(SETS[which], half), len(keys), collection)
    e, em = embed(net, images[sub])
    n = collection or len(keys)
    found_by = searches(keys[sub], canvases[sub], rows, [r for r, _, _ in grid],
                        out / f"searches_{which}_{half}_n{n}.npz")
    second, ceiling = None, J.noise_ceiling(SETS[which], half)
    if ceiling is not None:  # a set judged twice: its noise ceiling, and each rule against the consensus
        judged = {(min(r["a"], r["b"]), max(r["a"], r["b"])): r["rejudged"] for r in J.load()}
        g = sub.tolist()  # the rows' images renumbered into the collection: back to global rows
        second = [judged[(min(g[r["a"]], g[r["b"]]), max(g[r["a"]], g[r["b"]]))] for r in rows]
    res = {"set": which, "half": half, "edits": kind, "steps": steps, "width": width, "batches": batches,
           "images": int(len(sub)), "rules": combined(found_by, e, em, rows, grid, second)}
    if ceiling is not None:
        res["noise_ceiling"] = ceiling
    name = f"combined_{stem(kind, steps, width, batches)}_{which}_{half}_n{n}.json"
    (out / name).write_text(json.dumps(res, indent=1))
    return res
