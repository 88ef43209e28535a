"""How far the judged labels can be trusted: a blind second judging of a random sample of
the two reporting sets, and dedupe measured against the labels both judgings agree on.

Every recall and pair precision of the real pairs is measured against one judging by eye,
and the issue's target (0.95 / 0.95) is finer than a judging of strongly processed 32x32
pairs may be. So a seeded random sample of each reporting set -- the first set's reporting
half and the fresh set -- is judged a second time, by the same written rule
(``data/README.md``), on grids that show neither the first label, nor the set, nor any
distance, in an order mixing both sets, each pair's two images in a random left/right order.

Pre-registered (committed with this code before any pair was re-judged):

* the sample: :data:`PER_SET` pairs of each set drawn at random (seed :data:`SEED`);
* reported per set: the first label against the second judging (1 / 0 / unsure), the share
  of first positives and of first negatives the second judging keeps (Wilson intervals),
  Cohen's kappa over the pairs judged sure twice, and the **noise ceiling**: the second
  judging scored as if it were a decision (unsure = not the same shot) against the first
  labels -- what a decision that agreed with a second look at every pair would measure;
* beside it, the default's and the verifier option's recall / precision on the sample,
  against the first labels and against the *consensus* (pairs both judgings call the same
  way, sure), from their pairs among all 60,000 images (``audit``'s ``option_pairs.npz``);
* nothing in dedupe is chosen on this; the first labels stay the labels of record (the
  re-judgings go to their own CSV, :data:`DATA_REJUDGED`).

Second stage, ``rest`` (pre-registered the same way, after the first stage was reported and
before any of its pairs was judged): every other pair of both sets, judged by the same
protocol (its own order, seed ``SEED + 1``), so that both reporting sets are judged twice
whole; reported the same numbers over the whole sets (the ceiling of a set is then exact, not
sampled); the first stage's numbers stay as reported.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from curate.bench import _real_pairs_core as R
from curate.bench._real_pairs_core import wilson
from curate.bench._real_pairs_mine import global_row, split_index

#: the reporting sets that are sampled: name -> (CSV, half)
SETS = {"first": (R.DATA, "reporting"), "fresh": (R.DATA_FRESH, "reporting")}
PER_SET = 150
SEED = 20261207
#: the judging stages: the pre-registered random sample, then every other pair of both sets
STAGES = ("sample", "rest")
FOLDERS = {"sample": "grids_rejudge", "rest": "grids_rejudge_rest"}
DATA_REJUDGED = R.DATA.parent / "cifar10_second_judging.csv"
REJUDGED_COLUMNS = ("split_a", "index_a", "split_b", "index_b", "set", "label", "rejudged", "stage")


def sample(per_set: int = PER_SET, seed: int = SEED) -> list[dict]:
    """The pairs to judge again, in judging order: rows of the labelled CSVs (a, b, label,
    kind) with ``set`` and ``shown`` (a, b) -- the order the grid shows them in."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, (path, half) in SETS.items():
        pairs = R.load_pairs(path, half)
        take = np.sort(rng.choice(len(pairs), per_set, replace=False))
        rows += [{**pairs[i], "set": name} for i in take]
    return _shuffled(rows, rng, "sample")


def rest(seed: int = SEED + 1) -> list[dict]:
    """Every pair of both sets that :func:`sample` left out, in judging order (as sample's rows)."""
    first = {(r["set"], r["a"], r["b"]) for r in sample()}
    rows = [{**p, "set": name} for name, (path, half) in SETS.items() for p in R.load_pairs(path, half)
            if (name, p["a"], p["b"]) not in first]
    return _shuffled(rows, np.random.default_rng(seed), "rest")


def stage_rows(stage: str) -> list[dict]:
    """The rows of a judging stage (:data:`STAGES`), in judging order."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return sample() if stage == "sample" else rest()


def _shuffled(rows: list[dict], rng, stage: str) -> list[dict]:
    """Rows in a random order (both sets in one stream), each with ``shown``: its two images
    in a random left/right order, so a test image is not always on the left."""
    rows = [rows[i] for i in rng.permutation(len(rows))]
    swap = rng.random(len(rows)) < 0.5
    return [{**r, "stage": stage, "shown": (r["b"], r["a"]) if s else (r["a"], r["b"])} for r, s in zip(rows, swap)]


def write_grids(images: np.ndarray, rows: list[dict], folder: Path, per: int = 30) -> list[Path]:
    """Batches of ``per`` pairs as shown: ``batch_NN.png`` and ``batch_NN.csv`` (n, the two
    images, an empty label): no first label, set or distance anywhere in the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for b, s in enumerate(range(0, len(rows), per)):
        part = [{"a": r["shown"][0], "b": r["shown"][1]} for r in rows[s:s + per]]
        png = folder / f"batch_{b:02d}.png"
        R.render_grid(images, part, png, s)
        with open(folder / f"batch_{b:02d}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("n", "split_a", "index_a", "split_b", "index_b", "label"))
            for i, r in enumerate(part):
                w.writerow((s + i, *split_index(r["a"]), *split_index(r["b"]), ""))
        paths.append(png)
    return paths


def collect(folder: Path, rows: list[dict], path: Path = DATA_REJUDGED) -> list[dict]:
    """The judged batch CSVs of ``folder`` matched to ``rows`` (one stage's, :func:`stage_rows`)
    -> ``path`` (replacing that stage's rows, keeping the other's); the rows with ``rejudged``
    (1 / 0 / -1 unsure). Refuses a folder with a pair unlabelled or not of the rows."""
    got = {}
    for p in sorted(folder.glob("batch_*.csv")):
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                lab = r["label"].strip()
                if lab == "":
                    raise SystemExit(f"error: pair {r['n']} of {p.name} has no label")
                n = int(r["n"])
                shown = (global_row(r["split_a"], r["index_a"]), global_row(r["split_b"], r["index_b"]))
                if n >= len(rows) or shown != tuple(rows[n]["shown"]):
                    raise SystemExit(f"error: pair {n} of {p.name} is not the sample's pair {n}")
                got[n] = {"1": 1, "0": 0}.get(lab, -1)
    if len(got) != len(rows):
        raise SystemExit(f"error: {len(rows) - len(got)} of {len(rows)} pairs have no judged row in {folder}")
    out = [{**r, "rejudged": got[n]} for n, r in enumerate(rows)]
    stages = {r["stage"] for r in rows}
    kept = [r for r in load(path) if r["stage"] not in stages] if path.is_file() else []
    write(kept + out, path)
    return out


def write(rows: list[dict], path: Path = DATA_REJUDGED) -> None:
    """The re-judged rows as CSV (REJUDGED_COLUMNS; unsure written as ``unsure``), sorted."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REJUDGED_COLUMNS)
        for r in sorted(rows, key=lambda r: (STAGES.index(r["stage"]), r["set"], r["a"], r["b"])):
            w.writerow((*split_index(r["a"]), *split_index(r["b"]), r["set"], r["label"],
                        "unsure" if r["rejudged"] == -1 else r["rejudged"], r["stage"]))


def load(path: Path = DATA_REJUDGED) -> list[dict]:
    """The re-judged rows (a, b, set, label, rejudged: 1 / 0 / -1, stage)."""
    with open(path, newline="") as f:
        return [{"a": global_row(r["split_a"], r["index_a"]), "b": global_row(r["split_b"], r["index_b"]),
                 "set": r["set"], "label": int(r["label"]), "rejudged": {"1": 1, "0": 0}.get(r["rejudged"], -1),
                 "stage": r["stage"]} for r in csv.DictReader(f)]


def kappa(first, second) -> float:
    """Cohen's kappa of two 0/1 judgings of the same pairs."""
    x, y = np.asarray(first, int), np.asarray(second, int)
    po = float((x == y).mean())
    pe = float(x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean()))
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def agreement(rows: list[dict]) -> dict:
    """The first label against the second judging, the shares each keeps, kappa over the
    pairs judged sure twice, and the noise ceiling (the second judging as a decision,
    unsure = not the same shot, scored against the first labels)."""
    y = np.array([r["label"] for r in rows], int)
    z = np.array([r["rejudged"] for r in rows], int)
    table = {f"first {a} / second {'unsure' if b == -1 else b}": int(((y == a) & (z == b)).sum())
             for a in (1, 0) for b in (1, 0, -1)}
    kept_pos, kept_neg = int(((y == 1) & (z == 1)).sum()), int(((y == 0) & (z == 0)).sum())
    sure = z != -1
    return {"pairs": len(rows), "table": table,
            "positives_kept": kept_pos / max((y == 1).sum(), 1),
            "positives_kept_95": list(wilson(kept_pos, int((y == 1).sum()))) if (y == 1).any() else None,
            "negatives_kept": kept_neg / max((y == 0).sum(), 1),
            "negatives_kept_95": list(wilson(kept_neg, int((y == 0).sum()))) if (y == 0).any() else None,
            "kappa_sure": kappa(y[sure], z[sure]) if sure.any() else float("nan"),
            "ceiling": R.evaluate_hits(z == 1, y)}


def decisions(rows: list[dict], pairs: dict[str, np.ndarray]) -> dict:
    """Each decision's recall / precision on ``rows`` against the first labels and against
    the consensus (pairs both judgings call the same way, sure). ``pairs``: name -> (m, 2)
    pairs it reports among all images."""
    y = np.array([r["label"] for r in rows], int)
    z = np.array([r["rejudged"] for r in rows], int)
    agree = y == z
    out = {}
    for name, p in pairs.items():
        found = {tuple(q) for q in np.asarray(p).tolist()}
        hit = np.array([(min(r["a"], r["b"]), max(r["a"], r["b"])) in found for r in rows])
        out[name] = {"first_labels": R.evaluate_hits(hit, y), "consensus": R.evaluate_hits(hit[agree], y[agree]),
                     "disputed_found": int(hit[~agree].sum()), "disputed": int((~agree).sum())}
    return out


def report(rows: list[dict], pairs: dict[str, np.ndarray] | None = None) -> dict:
    """:func:`agreement` (and :func:`decisions` with ``pairs``) per set and over both."""
    out = {}
    for name in (*SETS, "both"):
        part = [r for r in rows if name == "both" or r["set"] == name]
        out[name] = {"agreement": agreement(part)}
        if pairs is not None:
            out[name]["decisions"] = decisions(part, pairs)
    return out


def set_of(pairs: Path | str, half: str) -> str | None:
    """The name of the sampled set (SETS) that ``pairs``' ``half`` is, else None."""
    for name, (path, h) in SETS.items():
        if Path(pairs).resolve() == path.resolve() and half == h:
            return name
    return None


def ceiling(name: str, path: Path = DATA_REJUDGED) -> dict:
    """Set ``name``'s noise ceiling from the committed second judging (every pair of the set
    judged twice, whichever stage): the second judging's recall / pair precision against the
    first labels, the shares of first labels it keeps, and kappa (:func:`agreement`)."""
    a = agreement([r for r in load(path) if r["set"] == name])
    return {"pairs_judged_twice": a["pairs"], "recall": a["ceiling"]["recall"], "precision": a["ceiling"]["precision"],
            "positives_kept_95": a["positives_kept_95"], "negatives_kept": a["negatives_kept"],
            "kappa_sure": a["kappa_sure"]}


def noise_ceiling(pairs: Path | str, half: str) -> dict | None:
    """:func:`ceiling` of ``pairs``' ``half`` when it is a set judged twice, else None: what
    every score of a reporting set is reported beside."""
    name = set_of(pairs, half)
    return None if name is None else ceiling(name)


def option_pairs(out: Path) -> dict[str, np.ndarray]:
    """The default's and the verifier option's pairs among all 60,000 images (after
    ``audit``: ``out/option_pairs.npz``)."""
    f = out / "option_pairs.npz"
    if not f.is_file():
        raise SystemExit(f"error: {f} is missing: run `python -m curate.bench.real_pairs audit --out {out}` first")
    z = np.load(f)
    return {"default": z["default"], "option": z["option"]}


def main_step(root: Path, out: Path, judged: bool, stage: str = "sample") -> str:
    """``rejudge [--rest]``: write the stage's grids; ``rejudge [--rest] --judged``: collect
    them and report the stage, and every pair judged twice so far (``all``)."""
    from curate.bench._real_pairs_mine import load_all

    rows = stage_rows(stage)
    if not judged:
        return "\n".join(str(p) for p in write_grids(load_all(root, out), rows, out / FOLDERS[stage]))
    collect(out / FOLDERS[stage], rows)
    pairs = option_pairs(out)
    every = load()
    res = {"stage": stage, stage: report([r for r in every if r["stage"] == stage], pairs), "all": report(every, pairs)}
    disputed = [r for r in every if r["rejudged"] != r["label"] and r["stage"] == stage]
    if disputed:  # for a person to look at, in the CSV's order
        R.render_grid(load_all(root, out, progress=False), disputed, out / f"disputed_{stage}.png", 0)
        res["disputed"] = [(*(f"{s}:{i}" for s, i in (split_index(r["a"]), split_index(r["b"]))), r["set"],
                            r["label"], "unsure" if r["rejudged"] == -1 else r["rejudged"]) for r in disputed]
    return json.dumps(res, indent=1)
