"""Benchmark of :func:`curate.brain.dedupe` with known answers: CIFAR-10 images plus
planted edited copies.

``python -m curate.dedupe_bench --cifar-root ../shared/data/cifar10``:

1. ``--originals`` CIFAR-10 training images (official indices ``--first`` ..), read
   from the JPEG tree (``ImageClassificationDirectoryTree`` + ``order.csv``);
2. ``--copies`` of them, each edited by 1-3 kinds of :mod:`curate.dedup.edits`
   (seeded by ``--seed``), written as PNG into ``--out``;
3. a FiftyOne dataset of originals + copies; :func:`dedupe` of *all pairs*
   (``query_tag=None``) with each method, timed, with the peak memory it added;
4. the same on the originals alone: CIFAR-10's own near-duplicates at that threshold,
   reported apart and shown in a grid for a person to judge;
5. scores per kind of edit, a rich table, ``results.json`` and PNG grids.

Scores (per method):

* **recall**: planted copies in the same group as their source / all planted copies;
* **precision**: over pairs (c, x) of a planted copy c and another member x of c's
  group: x is c's source, or x is an original that the same method groups with c's
  source on the originals alone (one of CIFAR-10's own near-duplicates of it). The
  **strict** precision counts only x = source as correct;
* per kind: the copies whose edits include that kind (a copy counts under each of its
  kinds), and per number of edits.

``--scale 60000`` also times the descriptor over that many CIFAR-10 images (train, then
test) and an all-pairs duplicate search over them, at the array level (decode,
describe, key search, verification), and the key search alone through scikit-learn's
ball tree on a sample of queries.

The default threshold was chosen on ``--first 40000 --seed 1`` (training images
40,000-49,999, edit seed 1); the defaults here (images 0-9,999, seed 0) are disjoint
from it.
"""
from __future__ import annotations

import argparse
import csv
import json
import threading
import time
from pathlib import Path

import numpy as np

from curate.dedup import edits as E

METHODS = ("descriptor", "pixel")


# ------------------------------------------------------------------- data ----

def cifar_rows(root: Path, split: str = "train") -> list[dict]:
    """order.csv rows of ``split``, by official index."""
    path = Path(root) / "order.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --cifar-root must be the CIFAR-10 image tree "
                                "with order.csv (split,index,label,path)")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return sorted(rows, key=lambda r: int(r["index"]))


def read_images(paths: list[str], workers: int = 2) -> np.ndarray:
    """uint8 (n, H, W, 3) from image files, decoded in threads."""
    import concurrent.futures as cf

    from PIL import Image

    def read(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))

    with cf.ThreadPoolExecutor(workers) as ex:
        return np.stack(list(ex.map(read, paths, chunksize=256)))


class PeakRSS:
    """Peak resident memory of this process above its level at entry, sampled every
    ``every`` s in a thread (catches numpy and torch alike); ``.peak_mb`` after exit."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak_mb = every, 0.0

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                import os

                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # not Linux: the high-water mark is all there is
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __enter__(self):
        self.start = self.rss_mb()
        self._stop = threading.Event()
        self._top = self.start

        def watch():
            while not self._stop.wait(self.every):
                self._top = max(self._top, self.rss_mb())

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._top, self.rss_mb()) - self.start


# -------------------------------------------------------------- scoring ----

def group_index(groups: list[list[int]], n: int) -> np.ndarray:
    """(n,) group number of each item, -1 when in no group."""
    g = np.full(n, -1, dtype=np.int64)
    for k, members in enumerate(groups):
        g[list(members)] = k
    return g


def score(groups: list[list[int]], n_orig: int, sources: np.ndarray, edits: list,
          orig_groups: list[list[int]]) -> dict:
    """Recall and precision of ``groups`` (lists of item indices: originals 0..n_orig-1,
    copy j at n_orig + j) against the planted truth; see the module docstring."""
    m = len(sources)
    g = group_index(groups, n_orig + m)
    og = group_index(orig_groups, n_orig)
    found = np.array([g[n_orig + j] >= 0 and g[n_orig + j] == g[sources[j]] for j in range(m)])
    pairs_ok, pairs_strict, pairs_all = np.zeros(m), np.zeros(m), np.zeros(m)
    for j in range(m):
        gj = g[n_orig + j]
        if gj < 0:
            continue
        s = sources[j]
        for x in groups[gj]:
            if x == n_orig + j:
                continue
            pairs_all[j] += 1
            same_src = x == s or (x >= n_orig and sources[x - n_orig] == s)
            pairs_strict[j] += same_src
            pairs_ok[j] += same_src or (x < n_orig and og[s] >= 0 and og[x] == og[s])

    def block(mask) -> dict:
        n_pairs = pairs_all[mask].sum()
        return {"copies": int(mask.sum()), "found": int(found[mask].sum()),
                "recall": float(found[mask].mean()) if mask.any() else None,
                "pairs": int(n_pairs),
                "precision": float(pairs_ok[mask].sum() / n_pairs) if n_pairs else None,
                "precision_strict": float(pairs_strict[mask].sum() / n_pairs) if n_pairs else None}

    kinds_of = [{k for k, _ in e} for e in edits]
    out = {"all": block(np.ones(m, bool)),
           "by_kind": {k: block(np.array([k in ks for ks in kinds_of])) for k in E.KINDS},
           "by_number_of_edits": {str(c): block(np.array([len(ks) == c for ks in kinds_of]))
                                  for c in sorted({len(ks) for ks in kinds_of})}}
    out["missed"] = [int(j) for j in np.nonzero(~found)[0]]
    out["wrong_pairs"] = [(int(n_orig + j), int(x)) for j in range(m) if g[n_orig + j] >= 0
                          for x in groups[g[n_orig + j]] if x != n_orig + j and x != sources[j]
                          and not (x < n_orig and og[sources[j]] >= 0 and og[x] == og[sources[j]])]
    out["groups"] = len(groups)
    out["grouped_items"] = int((g >= 0).sum())
    return out


# ---------------------------------------------------------------- grids -----

def pair_grid(images: np.ndarray, pairs: list[tuple[int, int]], path: Path, *, ncol: int = 8,
              zoom: int = 3) -> Path | None:
    """Pairs side by side (a, b, a, b, ...) of uint8 images (n, H, W, 3) as a PNG."""
    import torch

    from curate.plots import image_grid

    if not pairs:
        return None
    idx = [i for p in pairs for i in p]
    x = torch.as_tensor(images[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
    return image_grid(x, path, ncol=2 * max(1, ncol // 2), zoom=zoom, pad=2)


# ---------------------------------------------------------------- runs ------

def build_dataset(name: str, orig_paths: list[str], copy_paths: list[str]):
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.add_samples([fo.Sample(filepath=str(Path(p).resolve()), tags=["original"], item=i)
                    for i, p in enumerate(orig_paths)]
                   + [fo.Sample(filepath=str(Path(p).resolve()), tags=["copy"], item=len(orig_paths) + j)
                      for j, p in enumerate(copy_paths)], progress=False)
    return ds


def run_dedupe(samples, method: str, threshold, *, index: str, k: int, progress: bool) -> dict:
    """dedupe() of all pairs of ``samples``; groups as item numbers, seconds, peak MB."""
    from curate.brain import dedupe

    item = dict(zip(*samples.values(["id", "item"])))
    t = time.perf_counter()
    with PeakRSS() as mem:
        groups = dedupe(samples, method=method, threshold=threshold, query_tag=None, keep="first",
                        tag=f"dup_{method}", group_field=f"group_{method}", k=k, index=index,
                        brain_key=f"bench_{method}" if method == "descriptor" else None,
                        view_name=None, progress=progress)
    seconds = time.perf_counter() - t
    out = {"groups": [sorted(item[s] for s in g) for g in groups], "seconds": seconds, "peak_mb": mem.peak_mb}
    if method == "descriptor":
        cfg = getattr(samples._dataset.get_brain_info(f"bench_{method}").config, "curate_dedupe")
        out["threshold_applied"], out["background"] = cfg["threshold_applied"], cfg["background"]
        samples._dataset.delete_brain_run(f"bench_{method}")
    return out


def scale_timing(root: Path, n: int, *, k: int, threshold, index_sample: int, progress) -> dict:
    """Decode + describe + all-pairs search over the first n CIFAR-10 images (train, then
    test), without FiftyOne; and the key search alone by a ball tree on a query sample."""
    from curate.brain.dedupe import DEFAULT_THRESHOLD
    from curate.dedup import Descriptor, find_pairs
    from curate.dedup.search import KeySearch

    rows = (cifar_rows(root, "train") + cifar_rows(root, "test"))[:n]
    threshold = DEFAULT_THRESHOLD["descriptor"] if threshold is None else threshold
    out = {"images": len(rows)}
    d = Descriptor()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        keys, canvases = [], []
        for s in range(0, len(rows), 2048):  # streamed: 2,048 images decoded at a time
            x = read_images([str(Path(root) / r["path"]) for r in rows[s:s + 2048]])
            kk, cc = d.describe(x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
            keys.append(kk)
            canvases.append(cc)
        keys, canvases = np.concatenate(keys), np.concatenate(canvases)
        out["decode_describe_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        ref = np.random.default_rng(0).choice(len(keys), min(512, len(keys)), replace=False)
        res = find_pairs(keys, canvases, np.arange(len(keys)), threshold, descriptor=d, k=k,
                         relative=0.4, reference=ref, progress=progress)
        out["search_verify_s"] = time.perf_counter() - t1
    out.update(total_s=out["decode_describe_s"] + out["search_verify_s"], peak_mb=mem.peak_mb,
               pairs=len(res.pairs), candidates=res.candidates, timings=res.timings,
               threshold_applied=res.threshold, background=res.background,
               groups=len(_components(len(keys), res.pairs)))
    perm = d.mirror_permutation(3)
    q = np.random.default_rng(1).choice(len(keys), min(index_sample, len(keys)), replace=False)
    for index in ("exact", "ball_tree"):
        t = time.perf_counter()
        ks = KeySearch(keys, perm, index=index)
        build = time.perf_counter() - t
        t = time.perf_counter()
        ks.neighbours(q, k)
        per_query = (time.perf_counter() - t) / len(q)
        out[f"key_search_{index}"] = {"build_s": build, "queries_timed": len(q),
                                      "s_per_query": per_query,
                                      "all_queries_s_estimate": build + per_query * len(keys)}
    return out


def _components(n, pairs):
    from curate.brain.dedupe import components

    return components(n, pairs.tolist())


# ------------------------------------------------------------------ main ----

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m curate.dedupe_bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cifar-root", required=True, type=Path,
                   help="CIFAR-10 as an image tree with order.csv (e.g. ../shared/data/cifar10)")
    p.add_argument("--originals", type=int, default=10000, help="training images used")
    p.add_argument("--first", type=int, default=0, help="official index of the first training image")
    p.add_argument("--copies", type=int, default=200, help="planted edited copies")
    p.add_argument("--seed", type=int, default=0, help="seed of the edits")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threshold", type=float, default=None,
                   help="descriptor threshold (default: dedupe's); the pixel method uses its own default")
    p.add_argument("--pixel-threshold", type=float, default=None, help="pixel method threshold (default: dedupe's)")
    p.add_argument("--k", type=int, default=10, help="candidates per image")
    p.add_argument("--index", default="exact", choices=["exact", "ball_tree", "kd_tree", "brute"],
                   help="key search of the descriptor")
    p.add_argument("--scale", type=int, default=0,
                   help="also time describe + all-pairs search over this many CIFAR-10 images (e.g. 60000)")
    p.add_argument("--index-sample", type=int, default=300,
                   help="queries timed for the ball-tree key search in --scale")
    p.add_argument("--out", type=Path, default=Path("dedupe-bench"), help="results folder")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from rich.console import Console

    console = Console(width=max(110, Console().width))
    progress = not args.no_progress
    out = Path(args.out)
    (out / "copies").mkdir(parents=True, exist_ok=True)
    rows = cifar_rows(args.cifar_root)[args.first:args.first + args.originals]
    if len(rows) < args.originals:
        raise SystemExit(f"error: only {len(rows)} training images from index {args.first}")
    paths = [str(Path(args.cifar_root) / r["path"]) for r in rows]
    orig = read_images(paths)
    copies, sources, edits = E.plant(orig, args.copies, args.seed)
    copy_paths = []
    from PIL import Image

    for j, c in enumerate(copies):
        copy_paths.append(str(out / "copies" / f"{j:04d}.png"))
        Image.fromarray(c).save(copy_paths[-1])
    images = np.concatenate([orig, copies])
    n = len(orig)
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "planted": [{"copy": n + j, "source": int(s), "source_index": int(rows[s]["index"]),
                           "edits": e} for j, (s, e) in enumerate(zip(sources, edits))],
              "methods": {}}
    import fiftyone as fo

    ds = build_dataset(f"curate-dedupe-bench-{args.seed}-{args.first}", paths, copy_paths)
    try:
        for method in args.methods:
            thr = args.threshold if method == "descriptor" else args.pixel_threshold
            console.print(f"[bold]{method}[/]: originals alone (CIFAR-10's own duplicates)")
            alone = run_dedupe(ds.match_tags("original"), method, thr, index=args.index, k=args.k,
                               progress=progress)
            console.print(f"[bold]{method}[/]: originals + planted copies")
            full = run_dedupe(ds, method, thr, index=args.index, k=args.k, progress=progress)
            sc = score(full["groups"], n, sources, edits, alone["groups"])
            result["methods"][method] = {"score": sc, "seconds": full["seconds"], "peak_mb": full["peak_mb"],
                                         "originals_alone": {"groups": alone["groups"],
                                                             "seconds": alone["seconds"]},
                                         **{k: full[k] for k in ("threshold_applied", "background") if k in full}}
            grids = out / "grids"
            found = [(int(sources[j]), n + j) for j in range(len(sources)) if j not in set(sc["missed"])]
            pair_grid(images, found[:48], grids / f"{method}_found.png")
            pair_grid(images, [(int(sources[j]), n + j) for j in sc["missed"]][:48], grids / f"{method}_missed.png")
            pair_grid(images, sc["wrong_pairs"][:48], grids / f"{method}_wrong_pairs.png")
            pair_grid(images, [(g[0], x) for g in alone["groups"] for x in g[1:]][:96],
                      grids / f"{method}_cifar_own_groups.png")
    finally:
        if fo.dataset_exists(ds.name):
            fo.delete_dataset(ds.name)
    if args.scale:
        console.print(f"[bold]scale[/]: describe + all-pairs search over {args.scale} CIFAR-10 images")
        result["scale"] = scale_timing(args.cifar_root, args.scale, k=args.k, threshold=args.threshold,
                                       index_sample=args.index_sample, progress=None)
    result["environment"] = _environment()
    (out / "results.json").write_text(json.dumps(result, indent=1))
    console.print(results_table(result))
    for line in summary_lines(result):
        console.print(line)
    console.print(f"results: {(out / 'results.json').resolve()}; grids in {(out / 'grids').resolve()}")
    return result


def _environment() -> dict:
    import os
    import platform

    import torch

    return {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def results_table(result: dict):
    """One rich table: per method and kind, recall, precision (lenient / strict), copies."""
    from rich.table import Table

    t = Table(title="dedupe on CIFAR-10 with planted edited copies (all pairs)")
    for c in ("method", "edits", "copies", "recall", "precision", "strict", "time s", "peak MB"):
        t.add_column(c, justify="right" if c not in ("method", "edits") else "left")

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    for method, r in result["methods"].items():
        sc = r["score"]
        rows = [("all", sc["all"])] + [(k, v) for k, v in sc["by_kind"].items()] + \
               [(f"{k} edit{'s' if k != '1' else ''}", v) for k, v in sc["by_number_of_edits"].items()]
        for i, (name, b) in enumerate(rows):
            t.add_row(method if i == 0 else "", name, str(b["copies"]), f(b["recall"]), f(b["precision"]),
                      f(b["precision_strict"]), f"{r['seconds']:.1f}" if i == 0 else "",
                      f"{r['peak_mb']:.0f}" if i == 0 else "")
    return t


def summary_lines(result: dict) -> list[str]:
    """What the table does not show: CIFAR's own groups, thresholds, the scale timing."""
    lines = []
    for method, r in result["methods"].items():
        own = r["originals_alone"]["groups"]
        thr = f", threshold applied {r['threshold_applied']:.3f} (background {r['background']:.3f})" \
            if r.get("threshold_applied") is not None and r.get("background") is not None else ""
        lines.append(f"{method}: {len(own)} groups ({sum(len(g) for g in own)} images) among the originals "
                     f"alone (CIFAR-10's own near-duplicates; see grids/{method}_cifar_own_groups.png){thr}")
    if "scale" in result:
        s = result["scale"]
        lines.append(f"scale: {s['images']} images: decode + describe {s['decode_describe_s']:.0f} s, "
                     f"key search + verification {s['search_verify_s']:.0f} s, total {s['total_s']:.0f} s, "
                     f"peak +{s['peak_mb']:.0f} MB; {s['pairs']} pairs in {s['groups']} groups")
        for index in ("exact", "ball_tree"):
            e = s[f"key_search_{index}"]
            lines.append(f"  key search alone, {index}: build {e['build_s']:.1f} s, "
                         f"{1e3 * e['s_per_query']:.2f} ms/query ({e['queries_timed']} timed) "
                         f"-> {e['all_queries_s_estimate']:.0f} s for all {s['images']}")
    return lines


if __name__ == "__main__":
    main()
