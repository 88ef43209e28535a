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
from curate.duplicates.copy_embedding import cosine, load, network
from curate.duplicates.copy_embedding import standardise as _standardise

VIEWS, BATCH, TAU, LR, TRAIN = 4, 256, 0.1, 2e-3, 50_000
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
#: (floor, high) of :func:`combined`: the ratio test alone is (0, inf), the embedding alone in
#: the band (inf, high).
GRID = [(0.0, np.inf), (np.inf, 0.8), (np.inf, 0.85), (np.inf, 0.9)] + [
    (f, h) for f in (0.0, 0.5, 0.6, 0.7) for h in (0.85, 0.9, 0.95, np.inf) if (f, h) != (0.0, np.inf)]


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


def train(images: np.ndarray, v: np.ndarray, steps: int, progress=True):
    """Step 2: the trained network (seeded: the same images and views give the same weights)."""
    import torch
    import torch.nn.functional as F

    from curate._progress import progress as bar

    torch.manual_seed(0)
    net = network()
    opt = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    with bar(steps, "training the copy embedding", progress, fields=("loss",)) as advance:
        for _ in range(steps):
            idx = rng.choice(v.shape[1], BATCH, replace=False)
            a, b = rng.choice(len(v) + 1, 2, replace=False)  # 0: the image itself
            xa = v[a - 1, idx] if a else images[idx]
            xb = v[b - 1, idx] if b else images[idx]
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
            za, zb = net(standardise(xa)), net(standardise(xb))
            logits = za @ zb.T / TAU
            y = torch.arange(BATCH)
            loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
            advance(1, loss=optimise(opt, sched, loss))
    return net.eval()


def load_network(out: Path, kind: str, steps: int):
    """The network ``measure`` trained into ``out`` (None if there is none yet), in eval mode."""
    weights = out / f"copy_embedding_{kind}_{steps}.safetensors"
    return load(weights) if weights.is_file() else None


def embed(net, images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) embeddings of the images and of their mirror images."""
    import torch

    with torch.no_grad():
        e = [net(standardise(images[s:s + chunk])).numpy() for s in range(0, len(images), chunk)]
        m = [net(standardise(images[s:s + chunk, :, ::-1])).numpy() for s in range(0, len(images), chunk)]
    return np.concatenate(e), np.concatenate(m)


def measure(root: Path, out: Path, kind: str, steps: int, half: str = "tuning") -> dict:
    """Steps 1-3 on one half of the labelled pairs (the network is cached in ``out``)."""
    from safetensors.torch import save_file
    from sklearn.metrics import roc_auc_score

    from curate.bench import _real_pairs_core as R
    from curate.bench import _real_pairs_mine as M

    images = M.load_all(root, out)
    net = load_network(out, kind, steps)
    if net is None:
        net = train(images, views(images, out, kind), steps)
        save_file({k: t.contiguous() for k, t in net.state_dict().items()},
                  out / f"copy_embedding_{kind}_{steps}.safetensors")
    e, em = embed(net, images)
    rows = R.load_pairs(R.DATA, half)
    a, b = (np.array([r[k] for r in rows]) for k in ("a", "b"))
    y = np.array([r["label"] for r in rows])
    cos = cosine(e, em, a, b)
    _, canvases = M.describe_all(images, out, progress=False)
    d = R.aligned(canvases, rows)
    res = {"half": half, "edits": kind, "steps": steps, "pairs": int(len(y)), "positives": int(y.sum()),
           "auroc_cosine": float(roc_auc_score(y, cos)), "auroc_aligned": float(roc_auc_score(y, -d)), "bands": []}
    for lo, hi in BANDS:
        m = (d > lo) & (d <= hi)
        band = {"aligned": [lo, hi], "pairs": int(m.sum()), "positives": int(y[m].sum())}
        if 0 < y[m].sum() < m.sum():
            band.update(auroc_cosine=float(roc_auc_score(y[m], cos[m])), auroc_aligned=float(roc_auc_score(y[m], -d[m])))
        res["bands"].append(band)
    res["cosine_at_precision_0.95"] = R.best_threshold(-cos, y, 0.95)
    (out / f"embedding_{kind}_{steps}_{half}.json").write_text(json.dumps(res, indent=1))
    return res


def combined(keys, canvases, e, em, rows, grid) -> list[dict]:
    """The shipped decision with the embedding in the ratio test's band, end to end (every
    image of ``rows`` a query among all n images): a band pair (threshold < d <= reach x
    threshold) is a duplicate when the ratio test keeps it and its cosine is >= ``floor``, or
    when its cosine is >= ``high``; pairs within the threshold as shipped. One entry per
    (floor, high) of ``grid`` with recall and pair precision on the rows."""
    from curate.bench import _real_pairs_core as R

    shipped = R.search(keys, canvases, rows)
    wide = R.search(keys, canvases, rows, ratio=1e9)  # every verified band pair, kept
    kept = {tuple(p) for p in shipped.pairs.tolist()}
    band = [tuple(p) for p, d in zip(wide.pairs.tolist(), wide.distances.tolist()) if d > shipped.threshold]
    ab = np.array(band, dtype=np.int64).reshape(-1, 2)
    cos = dict(zip(band, cosine(e, em, ab[:, 0], ab[:, 1]).tolist()))
    within = kept - set(band)  # the pairs within the threshold, as shipped
    y = np.array([r["label"] for r in rows])
    key = [(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in rows]
    out = []
    for floor, high in grid:
        found = within | {p for p in band if (p in kept and cos[p] >= floor) or cos[p] >= high}
        hit = np.array([k in found for k in key])
        out.append({"floor": floor, "high": high, **R.evaluate_hits(hit, y), "pairs_found": len(found)})
    return out


def measure_combined(root: Path, out: Path, kind: str, steps: int, half: str, collection: int, grid) -> dict:
    """:func:`combined` on one half among all 60,000 images or the half's images plus
    ``collection`` others (as ``real_pairs measure --collection``), with the cached network."""
    from curate.bench import _real_pairs_core as R
    from curate.bench import _real_pairs_mine as M

    net = load_network(out, kind, steps)
    if net is None:
        raise SystemExit(f"error: no {kind} network in {out}; train it first: python -m curate.bench.real_pairs "
                         f"embedding --edits {kind} --steps {steps} --out {out}")
    images = M.load_all(root, out, progress=False)
    keys, canvases = M.describe_all(images, out, progress=False)
    sub, rows = R.collection(R.load_pairs(R.DATA, half), len(keys), collection)
    e, em = embed(net, images[sub])
    res = {"half": half, "edits": kind, "steps": steps, "images": int(len(sub)),
           "rules": combined(keys[sub], canvases[sub], e, em, rows, grid)}
    (out / f"embedding_combined_{kind}_{half}_n{collection or len(keys)}.json").write_text(json.dumps(res, indent=1))
    return res
