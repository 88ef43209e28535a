"""``python -m curate.bench.real_pairs {mine,grids,collect,measure,planted,embedding,combined,band,verifier,audit,keys,rejudge}``: see :mod:`curate.bench.real_pairs`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from curate.bench import _rejudge as J
from curate.bench._copy_embedding import BATCHES
from curate.bench._pair_verifier import NEGATIVES
from curate.bench._real_pairs_band import SETS
from curate.data.tensors import hwc_uint8_to_nchw
from curate.duplicates.copy_embedding import WIDTH


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m curate.bench.real_pairs", description=__doc__)
    p.add_argument("step", choices=("mine", "grids", "collect", "measure", "planted", "embedding", "combined", "band", "verifier",
                                       "audit", "keys", "rejudge"))
    p.add_argument("--cifar-root", type=Path, default=Path("../shared/data/cifar10"),
                   help="CIFAR-10 image tree with order.csv (default ../shared/data/cifar10)")
    p.add_argument("--out", type=Path, required=True, help="working folder, outside the repository")
    p.add_argument("--pairs", type=Path, default=None, help="labelled CSV (default: the shipped one)")
    p.add_argument("--half", choices=("tuning", "reporting"), default="tuning")
    p.add_argument("--seed", type=int, default=0, help="grids: seed of the judging sample")
    p.add_argument("--fit", action="store_true", help="measure, planted: also fit the edits")
    p.add_argument("--fresh", type=int, nargs="?", const=1, default=0, metavar="N",
                   help="grids, collect: a fresh reporting set apart from the labelled pairs' image series "
                        "(DIR/grids_fresh -> cifar10_pairs_fresh.csv, every row 'reporting'); measure: judge on it; "
                        "with --band: fresh band set N (1 if N is left out), test-train pairs apart from every "
                        "earlier set (DIR/grids_band_fresh[N] -> cifar10_pairs_band_fresh[N].csv)")
    p.add_argument("--band", action="store_true",
                   help="grids, collect: the band set, drawn by aligned distance 0.2-0.45 and the copy "
                        "embedding's cosine (DIR/grids_band -> cifar10_pairs_band.csv, halves by image series)")
    p.add_argument("--set", choices=tuple(SETS), default=None,
                   help="band, verifier --rules, embedding, combined: the labelled set whose half is measured "
                        "(default: band for band and verifier, first for embedding and combined)")
    p.add_argument("--rules", action="store_true",
                   help="verifier: the rules with the trained verifier end to end on --set's --half")
    p.add_argument("--choose", action="store_true",
                   help="verifier: the rule the tuning halves choose (after --rules on --set band and --set first, "
                        "--half tuning), by the pre-registered criterion of _pair_verifier.choose")
    p.add_argument("--negatives", choices=NEGATIVES, default=NEGATIVES[0],
                   help="verifier: its negative pairs shown as they are, or edited as its positives are "
                        f"(default {NEGATIVES[0]}, the first prototype)")
    p.add_argument("--finetune", type=int, default=0,
                   help="verifier: fine-tune the first verifier on the judged non-reporting pairs for this many "
                        "steps (_verifier_finetune; 0: no fine-tuning); with --crossval: the out-of-fold choice "
                        "of its logits; with --rules: it end to end on --set's --half (default 0)")
    p.add_argument("--crossval", action="store_true", help="verifier --finetune: cross-validation by image series")
    p.add_argument("--grids", action="store_true",
                   help="verifier --finetune: the judging grids of the option's additions to train on "
                        "(DIR/grids_verifier_train; with --judged: read them into cifar10_pairs_verifier_train.csv)")
    p.add_argument("--judged", action="store_true",
                   help="rejudge: read the judged grids (DIR/grids_rejudge) into cifar10_second_judging.csv and "
                        "report the agreement and the decisions against both judgings; audit: read the judged grids "
                        "(DIR/grids_option) into cifar10_pairs_option_audit.csv and print the pre-registered verdict")
    p.add_argument("--rest", action="store_true",
                   help="rejudge: the second stage, every pair of both reporting sets the first sample left out "
                        "(DIR/grids_rejudge_rest)")
    p.add_argument("--default", action="store_true",
                   help="audit: the default's own pairs among all 60,000 images, a sample per stratum (within the "
                        "threshold, the band) -> DIR/grids_default; with --judged: cifar10_pairs_default_audit.csv "
                        "and the default's pair precision")
    p.add_argument("--seconds", type=float, default=None,
                   help="audit --judged: total_s of curate bench dedupe --scale 60000 --verifier (the rule's "
                        "time bound; unset: no verdict on time)")
    p.add_argument("--copies", type=int, default=200, help="planted: copies of training images 40,000..")
    p.add_argument("--collection", type=int, default=0,
                   help="measure: the end-to-end search among the half's images plus this many others drawn "
                        "at random (seed 0) instead of all 60,000 (0): how the decision depends on the "
                        "collection's size")
    p.add_argument("--edits", choices=("real", "strong", "heavy"), default="real",
                   help="embedding: the augmentation's edit ranges: the real pairs' fit, wider, or heavier "
                        "crops and colour casts (default real)")
    p.add_argument("--steps", type=int, default=3000, help="embedding, verifier: training steps of batch 256 (default 3000)")
    p.add_argument("--width", type=int, default=WIDTH,
                   help=f"embedding, combined: the network's first-layer channels (default {WIDTH}, the shipped one's)")
    p.add_argument("--batches", choices=BATCHES, default=BATCHES[0],
                   help="embedding, combined: training batches drawn at random, or as crowds of mined look-alikes "
                        f"with possible copies masked out of the loss (needs mine's candidates.csv; default {BATCHES[0]})")
    p.add_argument("--grid", choices=("shipped", "networks"), default="shipped",
                   help="combined: the rules the shipped network was chosen from, or the wider grid that compares "
                        "trained networks (reach to 0.45; default shipped)")
    a = p.parse_args(argv)
    if a.set is None:
        a.set = "first" if a.step in ("embedding", "combined") else "band"
    return a


def _band_grids(fresh: int) -> str:
    """The judging grids' folder of the band set (0) or of fresh band set ``fresh``."""
    return "grids_band" if not fresh else "grids_band_fresh" + ("" if fresh == 1 else str(fresh))


def main(argv=None) -> None:
    import torch

    torch.set_num_threads(1)
    from curate.bench import _real_pairs_mine as M
    from curate.bench import _real_pairs_core as R

    a = parse_args(argv)
    if a.step == "mine":
        print(M.mine(a.cifar_root, a.out))
    elif a.step == "grids" and a.band:  # --fresh: test-train only, apart from the band set too
        from curate.bench import _real_pairs_band as B

        images = M.load_all(a.cifar_root, a.out)
        cands = R.read_candidates(a.out / "candidates.csv")
        e, em = B.embeddings(images, a.out)
        pooled = B.pool(cands, e, em, B.exclusion(cands, a.fresh))
        if a.fresh:
            pooled = [r for r in pooled if r["kind"] == "test-train"]
        sample = B.sample(pooled, a.seed, B.PER_FRESH if a.fresh else B.PER)
        for p in R.write_grids(images, sample, a.out / _band_grids(a.fresh)):
            print(p)
    elif a.step == "keys":  # the key search's candidate recall, without labels (after mine)
        print(json.dumps(M.key_recall(a.cifar_root, a.out), indent=1))
    elif a.step == "verifier" and a.finetune:
        from curate.bench import _verifier_finetune as F

        if a.grids and a.judged:
            print(f"{len(F.collect(a.out))} judged pairs -> {F.DATA_TRAIN}")
        elif a.grids:  # after audit: the shipped option's additions
            from curate.bench._option_audit import changes

            for p in F.write_grids(a.cifar_root, a.out, changes(a.cifar_root, a.out)["added"]):
                print(p)
        elif a.crossval:
            print(json.dumps(F.crossval(a.cifar_root, a.out, a.finetune), indent=1))
        elif a.rules:
            print(json.dumps(F.end_to_end(a.cifar_root, a.out, a.set, a.half, a.finetune), indent=1))
        else:
            print(F.train(a.cifar_root, a.out, a.finetune))
    elif a.step == "verifier":
        from curate.bench import _pair_verifier as V

        if a.choose:
            print(V.chosen(a.out, a.negatives))
            return
        res = V.end_to_end(a.cifar_root, a.out, a.half, a.set, a.steps, a.negatives) if a.rules else V.measure(
            a.cifar_root, a.out, a.half, a.steps, a.negatives)
        print(json.dumps(res, indent=1))
    elif a.step == "rejudge":  # a blind second judging of the reporting sets (audit first, for --judged)
        print(J.main_step(a.cifar_root, a.out, a.judged, "rest" if a.rest else "sample"))
    elif a.step == "audit":
        from curate.bench import _option_audit as A

        if a.default and a.judged:
            rows = A.collect(a.out, A.DATA_DEFAULT, "grids_default")
            sizes = json.loads((a.out / "grids_default" / "sizes.json").read_text())
            print(json.dumps(A.precision_of_default(rows, sizes), indent=1))
        elif a.default:
            for p in A.write_grids(a.cifar_root, a.out, default=True):
                print(p)
        elif a.judged and a.finetune:
            rows = A.collect(a.out, A.DATA_FINETUNED, "grids_option_finetuned")
            print(json.dumps(A.verdict(rows, a.seconds), indent=1))
        elif a.judged:
            print(json.dumps(A.verdict(A.collect(a.out), a.seconds), indent=1))
        else:
            ch = A.changes(a.cifar_root, a.out, a.finetune)
            print(json.dumps({k: (len(v) if isinstance(v, np.ndarray) else v) for k, v in ch.items()}))
            for p in A.write_grids(a.cifar_root, a.out, finetune=a.finetune):
                print(p)
    elif a.step == "band":
        from curate.bench import _real_pairs_band as B

        print(json.dumps(B.measure(a.cifar_root, a.out, a.half, a.set), indent=1))
    elif a.step == "grids":
        images = M.load_all(a.cifar_root, a.out)
        if a.fresh:  # apart from the labelled pairs' image series, half the bins
            exclude = R.fresh_exclusion(R.read_candidates(a.out / "candidates.csv"), R.load_pairs(R.DATA))
            sample = R.judging_sample(a.out / "candidates.csv", a.seed, R.BINS_FRESH, exclude)
        else:
            sample = R.judging_sample(a.out / "candidates.csv", a.seed)
        for p in R.write_grids(images, sample, a.out / ("grids_fresh" if a.fresh else "grids")):
            print(p)
    elif a.step == "embedding":
        from curate.bench._copy_embedding import measure as embedding

        print(json.dumps(embedding(a.cifar_root, a.out, a.edits, a.steps, a.half, a.width, a.batches, a.set), indent=1))
    elif a.step == "combined":
        from curate.bench._copy_embedding import GRID, GRID_NETWORKS, measure_combined

        grid = GRID if a.grid == "shipped" else GRID_NETWORKS
        print(json.dumps(measure_combined(a.cifar_root, a.out, a.edits, a.steps, a.half, a.collection, grid,
                                          a.width, a.batches, a.set), indent=1))
    elif a.step == "collect" and a.band:
        from curate.bench import _real_pairs_band as B

        path = a.pairs or (B.BAND_FRESH[a.fresh - 1] if a.fresh else B.DATA_BAND)
        R.write_pairs(R.collect(a.out / _band_grids(a.fresh),
                                "reporting" if a.fresh else None), path)
        print(json.dumps(counts(R.load_pairs(path)), indent=1))
    elif a.step == "collect":
        rows = R.collect(a.out / ("grids_fresh" if a.fresh else "grids"), "reporting" if a.fresh else None)
        path = a.pairs or (R.DATA_FRESH if a.fresh else R.DATA)
        R.write_pairs(rows, path)
        print(json.dumps(counts(R.load_pairs(path)), indent=1))
    else:  # results also as a file: the progress bars share stdout
        if a.step == "planted":
            res, name = planted(a.cifar_root, a.out, a.copies, a.seed, a.fit), f"planted_seed{a.seed}.json"
        else:
            res = measure(a.cifar_root, a.out, a.pairs or (R.DATA_FRESH if a.fresh else R.DATA), a.half, a.fit,
                          a.collection)
            name = f"measure_{'fresh' if a.fresh else a.half}{f'_n{a.collection}' if a.collection else ''}.json"
        (a.out / name).write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))


def counts(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        k = f"{r['half']}/{r['kind']}/{'positive' if r['label'] == 1 else 'negative'}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def measure(root: Path, out: Path, pairs: Path, half: str, fit: bool, collection: int = 0) -> dict:
    """The decisions on one half: the aligned distance of each labelled pair against the
    threshold (0.2, with and without the background cap of the whole 60,000), the shipped
    decision end to end (:func:`curate.bench._real_pairs_core.decided`: the candidates, the
    cap and the ratio test, over all 60,000 images) and the threshold alone the same way,
    the distances per label, grids of the shipped decision's misses and false hits; with
    ``fit``, the fitted edits of the positive pairs."""
    import inspect

    from curate.bench import _real_pairs_mine as M
    from curate.bench import _real_pairs_core as R
    from curate.brain import dedupe
    from curate.duplicates.choices import DEFAULT_EMBEDDING, DEFAULT_THRESHOLD

    rows = R.load_pairs(pairs, half)
    images = M.load_all(root, out, progress=False)
    keys, canvases = M.describe_all(images, out, progress=False)
    d = R.aligned(canvases, rows)
    y = np.array([r["label"] for r in rows])
    t = DEFAULT_THRESHOLD["descriptor"]
    relative = inspect.signature(dedupe).parameters["relative"].default
    background = background_of(keys, canvases, out)
    res = {"half": half, "pairs": counts(rows), "threshold": t, "relative": relative, "background": background,
           "default_no_cap": R.evaluate(d, y, t),
           "default_capped": R.evaluate(d, y, min(t, relative * background)),
           "per_kind": {k: R.evaluate(d[[r["kind"] == k for r in rows]], y[[r["kind"] == k for r in rows]], t)
                        for k in ("test-train", "train-train")},
           "distances": R.distribution(d, y)}
    ceiling = J.noise_ceiling(pairs, half)
    if ceiling is not None:  # beside every score, what a second look at the labels scores
        res["noise_ceiling"] = ceiling
    if half == "tuning":  # a choice: never made on the reporting half
        res["largest_threshold_at_precision_0.95"] = R.best_threshold(d, y, 0.95)
    # the shipped decision end to end (candidates among all 60,000, background cap, ratio
    # test), and the threshold alone, the same way
    sub, sub_rows = R.collection(rows, len(keys), collection)  # the half's images and `collection` others
    emb = R.shipped_embeddings(images[sub]) if DEFAULT_EMBEDDING else None
    hit, info = R.decided(keys[sub], canvases[sub], sub_rows, embeddings=emb)
    hit1, info1 = R.decided(keys[sub], canvases[sub], sub_rows)
    hit0, info0 = R.decided(keys[sub], canvases[sub], sub_rows, ratio=None)
    res["end_to_end"] = {"images": len(sub), "default": {**R.evaluate_hits(hit, y), **info},
                         "ratio_test_alone": {**R.evaluate_hits(hit1, y), **info1},
                         "threshold_only": {**R.evaluate_hits(hit0, y), **info0},
                         "per_kind": {k: R.evaluate_hits(hit[m], y[m]) for k in ("test-train", "train-train")
                                      for m in [np.array([r["kind"] == k for r in rows])]}}
    if (out / "candidates.csv").is_file():  # the mining's pool: estimates over it, not the sample
        fresh = Path(pairs) == R.DATA_FRESH
        cands = R.read_candidates(out / "candidates.csv")
        bins, exclude = (R.BINS_FRESH, R.fresh_exclusion(cands, R.load_pairs(R.DATA))) if fresh else (R.BINS, set())
        w = R.pool_weights(rows, cands, bins, exclude)
        cells, _ = R.pool_cells(rows, cands, bins, exclude)
        res["end_to_end"]["pool_weighted"] = {
            k: {**R.evaluate_weighted(h, y, w), **R.weighted_interval(h, y, cells, w)}
            for k, h in (("default", hit), ("ratio_test_alone", hit1), ("threshold_only", hit0))}
    # what the shipped decision gets wrong, for a person to look at (distance order)
    for name, pick in (("misses", (y == 1) & ~hit), ("false_hits", (y == 0) & hit)):
        idx = np.nonzero(pick)[0][np.argsort(d[pick])]
        if len(idx):
            suffix = f"_n{collection}" if collection else ""
            tag = "fresh" if Path(pairs) == R.DATA_FRESH else half
            R.render_grid(images, [rows[i] for i in idx], out / f"{name}_{tag}{suffix}.png", 0)
            res[name] = [(f"{rows[i]['split_a']}:{rows[i]['index_a']}", f"{rows[i]['split_b']}:{rows[i]['index_b']}",
                          round(float(d[i]), 4)) for i in idx]
    if fit:
        from curate._progress import progress as bar
        from curate.bench._real_pairs_fit import fit_pair, summarise

        pos = [r for r in rows if r["label"] == 1]
        f_cache = out / f"fits_{half}.json"
        fits = json.loads(f_cache.read_text()) if f_cache.is_file() else {}
        with bar(len(pos), "fitting edits") as advance:
            for r in pos:
                key = f"{r['a']}-{r['b']}"
                if key not in fits:
                    fits[key] = fit_pair(images[r["a"]], images[r["b"]])
                advance(1)
        f_cache.write_text(json.dumps(fits))
        res["edits"] = summarise([fits[f"{r['a']}-{r['b']}"] for r in pos])
    return res


def planted(root: Path, out: Path, copies: int, seed: int, fit: bool) -> dict:
    """The realistic edit model checked against the real pairs: ``copies`` training images
    (official 40,000 onwards) edited by :func:`curate.duplicates.edits.plant_real`; the
    default aligned distance of each copy to its source (recall at 0.2), and with ``fit``
    the same edit fit as the real positives get."""
    from curate.bench import _real_pairs_mine as M
    from curate.bench import _real_pairs_core as R
    from curate.duplicates import Descriptor
    from curate.duplicates import edits as E

    images = M.load_all(root, out, progress=False)
    originals = images[40_000:M.TRAIN]
    copies_u8, sources, params = E.plant_real(originals, copies, seed)
    x = np.concatenate([originals[sources], copies_u8])
    _, canvases = Descriptor().describe(hwc_uint8_to_nchw(x))
    n = len(sources)
    rows = [{"a": n + i, "b": i} for i in range(n)]
    d = R.aligned(canvases, rows)
    res = {"copies": n, "seed": seed, "recall@0.2": R.evaluate(d, np.ones(n), 0.2)["recall"],
           "distances": R.distribution(d, np.ones(n))[1]}
    if fit:
        from curate.bench._real_pairs_fit import fit_pair, summarise

        res["edits"] = summarise([fit_pair(copies_u8[i], originals[s]) for i, s in enumerate(sources)])
    return res


def background_of(keys: np.ndarray, canvases: np.ndarray, out: Path) -> float:
    """The background distance of all 60,000 images as :func:`find_pairs` measures it
    (median 3rd-nearest coarse candidate distance over the hashed reference sample)."""
    f = out / "background.json"
    if f.is_file():
        return json.loads(f.read_text())["background"]
    from curate.duplicates import Descriptor, find_pairs
    from curate.duplicates.search import reference_sample

    ref = reference_sample(keys)
    # the threshold of the query pass does not matter: the background comes first
    res = find_pairs(keys, canvases, ref[:1], 0.2, descriptor=Descriptor(), relative=0.4, reference=ref)
    f.write_text(json.dumps({"background": res.background}))
    return float(res.background)
