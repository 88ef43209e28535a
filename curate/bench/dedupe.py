"""Benchmark of :func:`curate.brain.dedupe` with known answers: CIFAR-10 images plus
planted edited copies.

``curate bench dedupe --cifar-root CIFAR`` (or ``python -m curate.bench.dedupe``; options in
:mod:`curate.bench.dedupe_options`):

1. ``--originals`` CIFAR-10 training images (official indices ``--first`` ..), read
   from an image tree (``ImageClassificationDirectoryTree``; ``order.csv`` gives the official
   order, :func:`curate.data.cifar.tree_files`);
2. ``--copies`` of them, each edited by 1-3 kinds of :mod:`curate.duplicates.edits`
   (seeded by ``--seed``), written as PNG into ``--out``;
3. a FiftyOne dataset of originals + copies; :func:`dedupe` of *all pairs*
   (``query_tag=None``) with each method, timed, with the peak memory it added;
4. the same on the originals alone: CIFAR-10's own near-duplicates at that threshold,
   reported apart and shown in a grid for a person to judge;
5. scores per kind of edit, a rich table, ``results.json`` and PNG grids.

Scores (per method):

* **recall**: planted copies in the same group as their source / all planted copies;
* **precision**: over pairs (c, x) of a planted copy c and another member x of c's
  group: x is c's source (or another copy of it), or x is an original that the same method groups with c's
  source on the originals alone (one of CIFAR-10's own near-duplicates of it). The
  **strict** precision counts only the source and its copies as correct;
* per kind: the copies whose edits include that kind (a copy counts under each of its
  kinds), and per number of edits.

``--compare`` also compares the distances the descriptor was chosen from, without a
threshold (:mod:`curate.bench._dedupe_compare`).

``--scale 60000`` also times the descriptor over that many CIFAR-10 images (train, then
test) and an all-pairs duplicate search over them, at the array level (decode,
describe, key search, verification), and the key search alone through scikit-learn's
ball tree on a sample of queries.

The default threshold was chosen on ``--first 40000 --seed 1`` (training images
40,000-49,999, edit seed 1); the defaults here (images 0-9,999, seed 0) are disjoint
from it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from curate.duplicates.choices import DEFAULT_EMBEDDING, DEFAULT_VERIFIER
from curate.duplicates import edits as E
from curate.bench._dedupe_measure import PeakRSS, cifar_paths, environment, read_images, scale_timing
from curate.bench._dedupe_report import method_grids, results_table, score, summary_lines
from curate.bench.dedupe_options import parse_args


def build_dataset(name: str, orig_paths: list, copy_paths: list):
    """A FiftyOne dataset of the originals (tag "original") and copies (tag "copy"); field
    ``item`` numbers them as the scores do (originals, then copies)."""
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.add_samples([fo.Sample(filepath=str(Path(p).resolve()), tags=["original"], item=i)
                    for i, p in enumerate(orig_paths)]
                   + [fo.Sample(filepath=str(Path(p).resolve()), tags=["copy"], item=len(orig_paths) + j)
                      for j, p in enumerate(copy_paths)], progress=False)
    return ds


def run_dedupe(samples, method: str, threshold, *, index: str, k: int, progress: bool, ratio=None,
               embedding: bool = DEFAULT_EMBEDDING, verifier: bool = DEFAULT_VERIFIER) -> dict:
    """dedupe() of all pairs of ``samples``; groups as item numbers, seconds, peak MB."""
    from curate.brain import dedupe

    item = dict(zip(*samples.values(["id", "item"])))
    t, cpu = time.perf_counter(), time.process_time()
    with PeakRSS() as mem:
        groups = dedupe(samples, method=method, threshold=threshold, query_tag=None, keep="first",
                        tag=f"dup_{method}", group_field=f"group_{method}", k=k, index=index, ratio=ratio,
                        embedding=embedding, verifier=verifier, brain_key=f"bench_{method}" if method == "descriptor" else None,
                        view_name=None, progress=progress)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    out = {"groups": [sorted(item[s] for s in g) for g in groups], "seconds": seconds, "cpu_s": cpu,
           "peak_mb": mem.peak_mb}
    if method == "descriptor":
        cfg = getattr(samples._dataset.get_brain_info(f"bench_{method}").config, "curate_dedupe")
        out["threshold_applied"], out["background"] = cfg["threshold_applied"], cfg["background"]
        samples._dataset.delete_brain_run(f"bench_{method}")
    return out


def real_kinds(p: dict) -> list[tuple[str, dict]]:
    """A realistic edit (:func:`curate.duplicates.edits.draw_real`) as the kinds of
    :data:`~curate.duplicates.edits.KINDS` it visibly contains, for the per-kind tables: a
    crop of more than 3 % of the side, any shift, a mirror, a contrast or channel-gain change
    of more than 5 % or a gamma off by more than 5 % (colour), a brightness change of more
    than 5 grey levels, a JPEG re-encode."""
    out = []
    if p["crop"]["side"] < 0.97:
        out.append(("crop", p["crop"]))
    if p["dx"] or p["dy"]:
        out.append(("shift", {"dx": p["dx"], "dy": p["dy"]}))
    if p["mirror"]:
        out.append(("mirror", {}))
    if abs(float(np.mean(p["offsets"]) + (np.mean(p["gains"]) - 1) * 127.5)) > 5:
        out.append(("brightness_contrast", {}))
    if max(abs(g - 1) for g in p["gains"]) > 0.05 or abs(p["gamma"] - 1) > 0.05:
        out.append(("colour", {"gains": p["gains"], "gamma": p["gamma"]}))
    if p["quality"] is not None:
        out.append(("reencode", {"quality": p["quality"]}))
    return out


def plant_copies(orig: np.ndarray, n_copies: int, seed: int, folder: Path, edits: str = "real"):
    """Edited copies of ``orig`` written as PNG into ``folder``: (copies, sources, edits, paths).

    ``edits="real"``: mild combined edits as measured on real CIFAR-10 near-duplicate pairs
    (:func:`curate.duplicates.edits.plant_real`); ``"classic"``: one to three strong edits
    of distinct kinds (:func:`curate.duplicates.edits.plant`, the benchmark's former edits)."""
    from PIL import Image

    if edits == "real":
        copies, sources, params = E.plant_real(orig, n_copies, seed)
        edits = [real_kinds(p) for p in params]
    else:
        copies, sources, edits = E.plant(orig, n_copies, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{j:04d}.png" for j in range(len(copies))]
    for c, p in zip(copies, paths):
        Image.fromarray(c).save(p)
    return copies, sources, edits, paths


def run(args) -> dict:
    """The benchmark for parsed options (:func:`curate.bench.dedupe_options.add_arguments`)."""
    import fiftyone as fo
    from rich.console import Console

    console = Console(width=max(110, Console().width))
    progress = not args.no_progress
    out = Path(args.out)
    files = cifar_paths(args.cifar_root)[args.first:args.first + args.originals]
    if len(files) < args.originals:
        raise SystemExit(f"error: only {len(files)} training images from position {args.first}")
    paths = [p for _, p in files]
    orig = read_images(paths)
    copies, sources, edits, copy_paths = plant_copies(orig, args.copies, args.seed, out / "copies", args.edits)
    images = np.concatenate([orig, copies])
    n = len(orig)
    ratio = args.ratio if args.ratio >= 0 else None
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"},
              "planted": [{"copy": n + j, "source": int(s), "source_index": int(files[s][0]),
                           "edits": e} for j, (s, e) in enumerate(zip(sources, edits))],
              "methods": {}}
    if args.compare:
        from curate.bench._dedupe_compare import compare

        console.print("[bold]compare[/]: pixel, thumbnail, GIST key and aligned distances")
        result["compare"] = compare(orig, copies, sources, k=args.k)
    ds = build_dataset(f"curate-dedupe-bench-{args.seed}-{args.first}", paths, copy_paths)
    try:
        for method in args.methods:
            thr = args.threshold if method == "descriptor" else args.pixel_threshold
            console.print(f"[bold]{method}[/]: originals alone (CIFAR-10's own duplicates)")
            alone = run_dedupe(ds.match_tags("original"), method, thr, index=args.index, k=args.k, ratio=ratio,
                               embedding=not args.no_embedding, verifier=args.verifier, progress=progress)
            console.print(f"[bold]{method}[/]: originals + planted copies")
            full = run_dedupe(ds, method, thr, index=args.index, k=args.k, progress=progress, ratio=ratio,
                              embedding=not args.no_embedding, verifier=args.verifier)
            sc = score(full["groups"], n, sources, edits, alone["groups"])
            result["methods"][method] = {"score": sc, "seconds": full["seconds"], "cpu_s": full["cpu_s"],
                                         "peak_mb": full["peak_mb"],
                                         "originals_alone": {"groups": alone["groups"],
                                                             "seconds": alone["seconds"]},
                                         **{k: full[k] for k in ("threshold_applied", "background") if k in full}}
            method_grids(images, n, sources, sc, alone["groups"], out / "grids", method)
    finally:
        if fo.dataset_exists(ds.name):
            fo.delete_dataset(ds.name)
    if args.scale:
        console.print(f"[bold]scale[/]: describe + all-pairs search over {args.scale} CIFAR-10 images")
        result["scale"] = scale_timing(args.cifar_root, args.scale, k=args.k, threshold=args.threshold, ratio=ratio,
                                       embedding=not args.no_embedding, verifier=args.verifier,
                                       index_sample=args.index_sample, progress=None, grids=out / "grids")
    result["environment"] = environment()
    (out / "results.json").write_text(json.dumps(result, indent=1))
    console.print(results_table(result))
    if "compare" in result:
        from curate.bench._dedupe_compare import compare_table

        console.print(compare_table(result))
    for line in summary_lines(result):
        console.print(line)
    console.print(f"results: {(out / 'results.json').resolve()}; grids in {(out / 'grids').resolve()}")
    return result


def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
