"""`curate bench keys`: the candidate search of dedupe at a million keys.

1. keys of all 60,000 CIFAR-10 images (train, then test) and of realistic edited copies of
   them (:func:`curate.duplicates.edits.draw_real`) until there are ``--n`` keys, cached in
   ``--out`` (a rerun reuses them);
2. **tuning** (query sample A, seed 1): recall of the 10 true nearest keys (exact chunked
   search, mirror counted) by FAISS's inverted file at each ``--nprobe`` value;
3. **reporting** (query sample B, seed 2): at the shipped ``DEFAULT_NPROBE``, recall@10 and
   recall@1, the index's build time and added memory, seconds per query, and the same per
   query for the exact search (a ratio in the same run); the whole all-pairs candidate
   search is extrapolated from the time per query.

Writes ``keys_bench.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from curate.data.tensors import hwc_uint8_to_nchw


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cifar-root", required=True, type=Path, help="CIFAR-10 image tree (../shared/data/cifar10)")
    p.add_argument("--n", type=int, default=1_000_000, help="keys in the index (originals, then edited copies)")
    p.add_argument("--queries", type=int, default=1000, help="queries per sample (tuning and reporting)")
    p.add_argument("--nprobe", default="8,16,32,64,128", help="IVF cells probed, tried on the tuning sample")
    p.add_argument("--timed-queries", type=int, default=20000, help="queries timed for the per-query cost")
    p.add_argument("--out", type=Path, default=Path("keys-bench"), help="results folder (and the key cache)")


def _keys(root: Path, n: int, out: Path, progress) -> np.ndarray:
    """(n, d) float32 keys: the CIFAR-10 images, then edited copies drawn with a fixed seed."""
    from curate.bench._dedupe_measure import read_images
    from curate.data.cifar import tree_files
    from curate.duplicates import Descriptor
    from curate.duplicates import edits as E

    cache = out / f"keys_{n}.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    paths = [p for _, _, p in tree_files(root, "train") + tree_files(root, "test")]
    if not paths:
        raise SystemExit(f"error: no CIFAR-10 image tree under {root}")
    d = Descriptor()
    rng = np.random.default_rng(0)
    chunks, have = [], 0
    with progress(n, "keys: describing originals and edited copies") as advance:
        round_ = 0
        while have < n:
            for s in range(0, len(paths), 2048):
                if have >= n:
                    break
                x = read_images(paths[s:s + 2048])
                if round_ > 0:  # an edited copy of every image, a new edit each round
                    x = np.stack([E.apply_real(im, E.draw_real(rng)) for im in x])
                kk, _ = d.describe(hwc_uint8_to_nchw(x))
                kk = kk[: n - have]
                chunks.append(kk.astype(np.float32))
                have += len(kk)
                advance(len(kk))
            round_ += 1
    keys = np.concatenate(chunks)
    out.mkdir(parents=True, exist_ok=True)
    np.save(cache, keys)
    return keys


def _recall(got: np.ndarray, want: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(got, want)]))


def run(args) -> dict:
    from rich.console import Console

    from curate._progress import progress
    from curate.bench._dedupe_measure import PeakRSS
    from curate.duplicates import Descriptor
    from curate.duplicates.key_index import DEFAULT_NPROBE, FaissKeys, default_nlist
    from curate.duplicates.search import KeySearch

    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    keys = _keys(args.cifar_root, args.n, args.out, lambda total, label: progress(total, label, True))
    n = len(keys)
    perm = Descriptor().mirror_permutation(3)
    samples = {name: np.random.default_rng(seed).choice(n, args.queries, replace=False)
               for name, seed in (("tuning", 1), ("reporting", 2))}
    exact = KeySearch(keys, perm, index="exact")
    truth, exact_s = {}, {}
    for name, rows in samples.items():
        t0 = time.perf_counter()
        truth[name] = exact.neighbours(rows, 10)
        exact_s[name] = (time.perf_counter() - t0) / len(rows)
    del exact
    result = {"n": n, "d": int(keys.shape[1]), "nlist": default_nlist(2 * n), "queries": args.queries,
              "exact_s_per_query": exact_s["reporting"]}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        index = FaissKeys(keys, perm, approximate=True, nprobe=DEFAULT_NPROBE)
        result["build_s"] = time.perf_counter() - t0
    result["build_peak_mb"] = mem.peak_mb
    tuning = []
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        index.index.nprobe = nprobe
        t0 = time.perf_counter()
        got = index.neighbours(samples["tuning"], 10)
        tuning.append({"nprobe": nprobe, "recall10": _recall(got, truth["tuning"], 10),
                       "s_per_query": (time.perf_counter() - t0) / args.queries})
        console.print(f"tuning nprobe={nprobe}: recall@10 {tuning[-1]['recall10']:.4f}, "
                      f"{tuning[-1]['s_per_query'] * 1e3:.2f} ms/query")
    result["tuning"] = tuning
    index.index.nprobe = DEFAULT_NPROBE
    got = index.neighbours(samples["reporting"], 10)
    result["reporting"] = {"nprobe": DEFAULT_NPROBE, "recall10": _recall(got, truth["reporting"], 10),
                           "recall1": float(np.mean(got[:, 0] == truth["reporting"][:, 0]))}
    rows = np.random.default_rng(3).choice(n, min(args.timed_queries, n), replace=False)
    t0 = time.perf_counter()
    index.neighbours(rows, 10)
    per_query = (time.perf_counter() - t0) / len(rows)
    result.update(ivf_s_per_query=per_query, all_queries_s=per_query * n,
                  exact_all_queries_s=exact_s["reporting"] * n, speedup=exact_s["reporting"] / per_query)
    r = result["reporting"]
    console.print(f"{n:,} keys (d={result['d']}, mirrored rows included: {2 * n:,}), nlist {result['nlist']}: "
                  f"build {result['build_s']:.0f} s (+{result['build_peak_mb']:.0f} MB); reporting sample: "
                  f"recall@10 {r['recall10']:.4f}, recall@1 {r['recall1']:.4f} at nprobe {r['nprobe']}; "
                  f"{per_query * 1e3:.2f} ms/query vs exact {exact_s['reporting'] * 1e3:.1f} ms/query "
                  f"({result['speedup']:.0f}x); all {n:,} queries about {result['all_queries_s'] / 60:.0f} min "
                  f"(exact: {result['exact_all_queries_s'] / 3600:.1f} h)")
    (args.out / "keys_bench.json").write_text(json.dumps(result, indent=2))
    return result
