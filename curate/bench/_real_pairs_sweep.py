"""Prototype decisions on the tuning half of the real pairs: the aligned distance under
other :class:`DescriptorSpec` settings of the aligner (thumbnail size and blur, chroma
weight, zoom / shift reach, coarse grid), and the fitted residual of
:mod:`curate.bench._real_pairs_fit` (full-resolution alignment with blur and per-channel
affine colour) -- each scored by recall at pair precision >= 0.95 and at the default 0.2.

``python -m curate.bench._real_pairs_sweep --cifar-root ../shared/data/cifar10 --out DIR``
(needs ``DIR`` from ``python -m curate.bench.real_pairs mine``). Tuning half only.

The canvases depend only on ``work`` (32), so every aligner setting reuses the mined ones.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: settings tried: name -> DescriptorSpec overrides of the aligner
SPECS = {
    "default": {},
    "fine_grid": {"scales": 5, "step": 1 / 32},
    "more_crop": {"max_crop": 0.3, "scales": 4},
    "more_shift": {"max_shift": 5 / 32},
    "thumb10": {"thumb": 10},
    "thumb6": {"thumb": 6},
    "blur2.5": {"blur": 2.5, "coarse_blur": 2.5},
    "blur3": {"blur": 3.0, "coarse_blur": 3.0},
    "chroma0.2": {"chroma": 0.2},
    "chroma0": {"chroma": 0.0},
    "blur3_chroma0.2": {"blur": 3.0, "coarse_blur": 3.0, "chroma": 0.2},
    "blur3_chroma0.2_crop0.3": {"blur": 3.0, "coarse_blur": 3.0, "chroma": 0.2, "max_crop": 0.3, "scales": 4},
    # per-channel affine colour (Aligner(colour=...)), with the spec overrides after it
    "rgb": {"colour": "rgb"},
    "y_rgb": {"colour": "y_rgb"},
    "y_rgb_chroma0.5": {"colour": "y_rgb", "chroma": 0.5},
    "y_rgb_chroma0.7": {"colour": "y_rgb", "chroma": 0.7},
    "y_rgb_chroma1": {"colour": "y_rgb", "chroma": 1.0},
}


def aligned_with(canvases: np.ndarray, pairs: np.ndarray, overrides: dict) -> np.ndarray:
    """(P, 2) rows -> (P,) exact aligned distances under DescriptorSpec(**overrides)."""
    from curate.duplicates.align import Aligner
    from curate.duplicates.descriptor import DescriptorSpec
    from curate.duplicates.verify import PairVerifier

    o = dict(overrides)
    colour = o.pop("colour", "ycc")
    return PairVerifier(Aligner(DescriptorSpec(**o), colour=colour), canvases, mirror=True,
                     refine_below=np.inf).distances(pairs)


def score(d: np.ndarray, y: np.ndarray) -> dict:
    from curate.bench import _real_pairs_core as R

    at = R.evaluate(d, y, 0.2)
    best = R.best_threshold(d, y, 0.95)
    return {"recall@0.2": round(at["recall"], 3), "precision@0.2": round(at["precision"], 3),
            "threshold@p0.95": round(best["threshold"], 4), "recall@p0.95": round(best["recall"], 3),
            "precision@p0.95": round(best["precision"], 3)}


def best_rule(d0: np.ndarray, d1: np.ndarray, y: np.ndarray, min_precision: float = 0.95) -> dict:
    """The best of ``d0 <= a or d1 <= b`` and ``d0 <= a and d1 <= b`` over a grid of (a, b):
    the largest recall whose pair precision stays >= min_precision (a tuning aid)."""
    from curate.bench import _real_pairs_core as R

    best = {"recall": 0.0}
    for rule in ("or", "and"):
        for a in np.round(np.arange(0.15, 0.35, 0.01), 2):
            for b in np.round(np.arange(0.05, 0.40, 0.01), 2):
                hit = (d0 <= a) | (d1 <= b) if rule == "or" else (d0 <= a) & (d1 <= b)
                e = R.evaluate_hits(hit, y)
                if e["tp"] + e["fp"] and e["precision"] >= min_precision and e["recall"] > best["recall"]:
                    best = {"rule": rule, "a": float(a), "b": float(b), "recall": round(e["recall"], 3),
                            "precision": round(e["precision"], 3)}
    return best


def main(argv=None) -> None:
    import torch

    torch.set_num_threads(1)
    from curate._progress import progress as bar
    from curate.bench import _real_pairs_mine as M
    from curate.bench import _real_pairs_core as R
    from curate.bench._real_pairs_fit import fit_pair

    p = argparse.ArgumentParser(prog="python -m curate.bench._real_pairs_sweep")
    p.add_argument("--cifar-root", type=Path, default=Path("../shared/data/cifar10"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fit", action="store_true", help="also the fitted residual (slow: ~1 s a pair)")
    p.add_argument("--only", nargs="*", default=None, help="names of SPECS to run (default: all)")
    p.add_argument("--rules", action="store_true",
                   help="also two-distance rules: the default with each of chroma 0, chroma 0.2, colour rgb")
    a = p.parse_args(argv)
    rows = R.load_pairs(half="tuning")
    y = np.array([r["label"] for r in rows])
    pairs = np.array([(r["a"], r["b"]) for r in rows], dtype=np.int64)
    images = M.load_all(a.cifar_root, a.out, progress=False)
    _, canvases = M.describe_all(images, a.out, progress=False)
    out = {}
    for name, o in SPECS.items():
        if a.only is not None and name not in a.only:
            continue
        out[name] = score(aligned_with(canvases, pairs, o), y)
        print(name, out[name], flush=True)
    if a.rules:
        d0 = aligned_with(canvases, pairs, {})
        for name in ("chroma0", "chroma0.2", "rgb"):
            out[f"rule_default_with_{name}"] = best_rule(d0, aligned_with(canvases, pairs, SPECS[name]), y)
            print(name, out[f"rule_default_with_{name}"], flush=True)
    if a.fit:
        cache = a.out / "fits_all_tuning.json"
        fits = {}
        for f in (a.out / "fits_tuning.json", cache):  # the positives' fits of `measure --fit` too
            if f.is_file():
                fits.update(json.loads(f.read_text()))
        with bar(len(rows), "fitting") as advance:
            for r in rows:
                k = f"{r['a']}-{r['b']}"
                if k not in fits:
                    fits[k] = fit_pair(images[r["a"]], images[r["b"]])
                advance(1)
        cache.write_text(json.dumps(fits))
        res = np.array([fits[f"{r['a']}-{r['b']}"]["residual"] for r in rows])
        contrast = np.array([images[r["a"]].astype(np.float64).std() for r in rows])
        out["fit_residual_levels"] = score(res / 100, y)  # thresholds in units of 100 grey levels
        out["fit_residual_over_contrast"] = score(res / contrast, y)
        print("fit", out["fit_residual_levels"], out["fit_residual_over_contrast"], flush=True)
    f = a.out / "sweep_tuning.json"
    (f).write_text(json.dumps({**(json.loads(f.read_text()) if f.is_file() else {}), **out}, indent=1))


if __name__ == "__main__":
    main()
