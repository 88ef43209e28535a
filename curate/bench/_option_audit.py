"""What dedupe's verifier option changes among all 60,000 CIFAR-10 images, judged by eye:
the pre-registered check that decides whether it becomes the default.

The labelled sets say how the option does on pairs drawn to be hard; a curator sees what it
does to *their* collection: the pairs it adds to the default's (and the few it drops: with
the verifier on, distances are refined farther, which moves some ratio-test backgrounds).
So both searches run over all 60,000 images (every image a query, dedupe's defaults), and a
seeded random sample of the added pairs -- plus every dropped pair -- is judged by the
written rule (``curate/bench/data/README.md``), without the pairs' distance, cosine or logit
on the grid.

The rule (pre-registered, committed with this module before any pair was judged): the
option becomes dedupe's default if (1) all 60,000 images with it take at most 300 s in
``curate bench dedupe --scale 60000 --verifier`` on this machine (the issue's bound), and
(2) at least :data:`PRECISION_NEEDED` of the :data:`SAMPLE` sampled added pairs are the same
shot, an unsure one counted as not. Why 0.85: the added pairs are about an eighth of the
option's pairs; with the default's pairs as precise as on the labelled sets (0.96-0.97),
0.85 keeps the option's pair precision at 0.95.

``python -m curate.bench.real_pairs audit --out DIR`` (after ``mine``) writes the pairs
(``DIR/option_pairs.npz``), the judging grids (``DIR/grids_option``: added, then dropped);
``audit --judged`` reads the judged CSVs into :data:`DATA_OPTION` and prints the verdict.

The option with the verifier fine-tuned on judged pairs (:mod:`curate.bench._verifier_finetune`,
its logits chosen by cross-validation), audited the same way and by the same rule (committed
before any of its pairs was judged): ``audit --finetune 300`` draws :data:`SAMPLE` of the pairs
it adds to the default's, none of them a pair judged before (those are its training pairs or
reporting pairs) nor in an image series it was trained on (so the audit measures series it
never saw), and every such pair it drops, into ``DIR/grids_option_finetuned``; ``audit
--finetune 300 --judged`` reads them into :data:`DATA_FINETUNED` and prints the verdict. Its
time is the option's: the verifier is asked about the same pairs whatever its weights. Should
it fail the rule, its network still replaces the option's if the share of the same shot among
its sampled additions is above the shipped option's (:data:`OPTION_SHARE`, 114 of 150).
Judged: 77 of 150 the same shot (0.51): neither (docs/near-duplicates.md).

The default's own pairs, audited the same way (a measurement, no decision hangs on it):
``audit --default`` draws :data:`SAMPLE_DEFAULT` of the default's pairs among all 60,000
images from each stratum of :data:`STRATA` (by exact aligned distance: within the threshold,
and the ratio test's band that steps 5-6 keep), ``audit --default --judged`` reads them into
:data:`DATA_DEFAULT` and prints each stratum's share of same-shot pairs and the pair
precision of all the default's pairs (strata weighted by their sizes).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from curate.bench import _real_pairs_core as R
from curate.bench._real_pairs_core import wilson

SAMPLE = 150
SEED = 0
PRECISION_NEEDED = 0.85
SECONDS_ALLOWED = 300.0
#: the judged pairs: COLUMNS with ``half`` the pair's group (``added`` / ``dropped``), label
#: 1 / 0 / -1 (unsure; kept: the rule counts it)
DATA_OPTION = R.DATA.parent / "cifar10_pairs_option_audit.csv"
GROUPS = ("added", "dropped")
#: the default's pairs by exact aligned distance: within the threshold, beyond it (the band)
STRATA = ("within", "band")
SAMPLE_DEFAULT = 75
DATA_DEFAULT = R.DATA.parent / "cifar10_pairs_default_audit.csv"
DATA_FINETUNED = R.DATA.parent / "cifar10_pairs_finetuned_audit.csv"
#: the share of the same shot among the shipped option's sampled additions (DATA_OPTION)
OPTION_SHARE = 114 / 150


def all_pairs(keys: np.ndarray, canvases: np.ndarray, e: np.ndarray, em: np.ndarray, images: np.ndarray,
              verifier: bool, weights: Path | None = None, logits: tuple[float, float] | None = None):
    """find_pairs over all n images, every image a query, with dedupe's defaults (the copy
    embedding on), with or without the verifier (the shipped one, or ``weights`` with the
    (band, beyond) ``logits``): the PairResult."""
    from curate.brain import dedupe
    from curate.data.tensors import hwc_uint8_to_nchw
    from curate.duplicates import Descriptor, find_pairs
    from curate.duplicates.choices import DEFAULT_THRESHOLD
    from curate.duplicates.search import reference_sample

    defaults = inspect.signature(dedupe).parameters
    verify = None
    if verifier:
        from curate.duplicates.copy_verifier import CopyVerifier

        net = CopyVerifier() if weights is None else CopyVerifier(weights)

        def verify(ab):
            return net.pair_logits(lambda rows: hwc_uint8_to_nchw(images[rows]), ab)
    at = {} if logits is None else {"verifier_logit": logits[0], "verifier_beyond": logits[1]}
    return find_pairs(keys, canvases, np.arange(len(keys)), DEFAULT_THRESHOLD["descriptor"],
                      descriptor=Descriptor(), reference=reference_sample(keys),
                      **{k: defaults[k].default for k in ("k", "relative", "ratio")},
                      embeddings=(e, em), verifier=verify, **at)


def changes(root: Path, out: Path, finetune: int = 0) -> dict:
    """The pairs the option adds and drops among all 60,000 images (cached in
    ``out/option_pairs.npz``; with ``finetune`` steps, the option with the fine-tuned verifier
    at its chosen logits, ``out/option_pairs_finetuned_{finetune}.npz``): {"added": (m, 2),
    "dropped": (m', 2), "default": count, "option": count, "by_verifier": count}."""
    f = out / ("option_pairs.npz" if not finetune else f"option_pairs_finetuned_{finetune}.npz")
    if not f.is_file():
        from curate.bench import _real_pairs_band as B

        images, keys, canvases, e, em = B.load(root, out)
        base = out / "option_pairs.npz"
        plain = np.load(base)["default"] if base.is_file() else all_pairs(keys, canvases, e, em, images, False).pairs
        if finetune:
            from curate.bench import _verifier_finetune as F

            option = all_pairs(keys, canvases, e, em, images, True, F.train(root, out, finetune),
                               F.chosen_logits(out, finetune))
        else:
            option = all_pairs(keys, canvases, e, em, images, True)
        np.savez(f, default=plain, option=option.pairs, by_verifier=option.by_verifier)
    z = np.load(f)
    a, b = ({tuple(p) for p in z[k].tolist()} for k in ("default", "option"))
    return {"added": np.array(sorted(b - a), dtype=np.int64).reshape(-1, 2),
            "dropped": np.array(sorted(a - b), dtype=np.int64).reshape(-1, 2),
            "default": len(a), "option": len(b), "by_verifier": int(z["by_verifier"])}


def judging_rows(ch: dict, n: int = SAMPLE, seed: int = SEED, judged: set | None = None,
                 apart: set | None = None) -> list[dict]:
    """``n`` added pairs drawn at random (``seed``), then every dropped pair, each shuffled
    within its group, none of them in ``judged`` (pairs (a, b), a < b) nor touching an image
    of ``apart``; rows as the judging grids take them."""
    rng = np.random.default_rng(seed)
    if judged or apart:
        judged, apart = judged or set(), apart or set()
        ch = {g: np.array([p for p in ch[g].tolist() if tuple(p) not in judged and not set(p) & apart],
                          dtype=np.int64).reshape(-1, 2) for g in GROUPS}
    added = ch["added"][np.sort(rng.choice(len(ch["added"]), min(n, len(ch["added"])), replace=False))]
    out = []
    for group, pairs in (("added", added), ("dropped", ch["dropped"])):
        for a, b in pairs[rng.permutation(len(pairs))].tolist():
            out.append({"a": a, "b": b, "group": group, "distance": "", "kind": R.pair_kind(a, b)})
    return out


def default_rows(root: Path, out: Path, n: int = SAMPLE_DEFAULT, seed: int = SEED) -> tuple[list[dict], dict]:
    """``n`` of the default's pairs among all 60,000 images drawn at random (``seed``) from
    each stratum of :data:`STRATA` (exact aligned distance <= or > the threshold), shuffled
    within it, and the strata's sizes."""
    from curate.bench import _real_pairs_mine as M
    from curate.duplicates.choices import DEFAULT_THRESHOLD

    changes(root, out)
    pairs = np.load(out / "option_pairs.npz")["default"]
    images = M.load_all(root, out, progress=False)
    _, canvases = M.describe_all(images, out, progress=False)
    d = R.aligned(canvases, [{"a": a, "b": b} for a, b in pairs.tolist()])
    rng = np.random.default_rng(seed)
    rows, sizes = [], {}
    for stratum, member in zip(STRATA, (d <= DEFAULT_THRESHOLD["descriptor"], d > DEFAULT_THRESHOLD["descriptor"])):
        idx = np.nonzero(member)[0]
        sizes[stratum] = len(idx)
        pick = idx[np.sort(rng.choice(len(idx), min(n, len(idx)), replace=False))]
        for a, b in pairs[pick[rng.permutation(len(pick))]].tolist():
            rows.append({"a": a, "b": b, "group": stratum, "distance": "", "kind": R.pair_kind(a, b)})
    return rows, sizes


def write_grids(root: Path, out: Path, default: bool = False, finetune: int = 0) -> list[Path]:
    """The judging grids ``out/grids_option/batch_NN.{png,csv}`` (``default``:
    ``out/grids_default``; ``finetune``: ``out/grids_option_finetuned``, pairs never judged
    before) and the rows' groups (``groups.json`` beside them)."""
    from curate.bench import _real_pairs_mine as M

    if default:
        rows, sizes = default_rows(root, out)
        folder = out / "grids_default"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sizes.json").write_text(json.dumps(sizes))
    elif finetune:
        from curate.bench._verifier_finetune import training_series

        ch, before = changes(root, out, finetune), DATA_FINETUNED.name
        rows = judging_rows(ch, judged=R.judged_pairs(before),
                            apart=training_series(np.concatenate([ch["added"], ch["dropped"]]), before))
        folder = out / "grids_option_finetuned"
    else:
        rows = judging_rows(changes(root, out))
        folder = out / "grids_option"
    paths = R.write_grids(M.load_all(root, out, progress=False), rows, folder)
    (folder / "groups.json").write_text(json.dumps([[r["a"], r["b"], r["group"]] for r in rows]))
    return paths


def collect(out: Path, path: Path = DATA_OPTION, folder: str = "grids_option") -> list[dict]:
    """The judged batch CSVs of ``out/folder`` -> ``path`` (every row, unsure ones as -1;
    ``half`` the row's group), the rows."""
    folder = out / folder
    group = {(a, b): g for a, b, g in json.loads((folder / "groups.json").read_text())}
    rows = [{**r, "half": group[(r["a"], r["b"])]} for r in R.collect(folder, "reporting")]
    if len(rows) != len(group):
        raise SystemExit(f"error: {len(group) - len(rows)} of {len(group)} pairs in {folder} have no label")
    R.write_judged(rows, path)
    return rows


def verdict(rows: list[dict], seconds: float | None = None) -> dict:
    """The rule of the module docstring on judged ``rows`` (label 1 / 0 / -1, half = group)
    and the 60,000-image time ``seconds`` (None: not judged here)."""
    out = {g: _judged(rows, g) for g in GROUPS}
    precise = out["added"]["share_same"] is not None and out["added"]["share_same"] >= PRECISION_NEEDED
    fast = seconds is None or seconds <= SECONDS_ALLOWED
    out["rule"] = {"precision_needed": PRECISION_NEEDED, "seconds_allowed": SECONDS_ALLOWED, "seconds": seconds,
                   "precise_enough": bool(precise), "fast_enough": bool(fast),
                   "becomes_default": bool(precise and fast and seconds is not None)}
    return out


def precision_of_default(rows: list[dict], sizes: dict) -> dict:
    """Each stratum's share of same-shot pairs among the judged ``rows`` (half = stratum;
    an unsure one counted as not, and also left out) with its Wilson interval, and the
    pair precision of all the default's pairs: the strata's shares weighted by ``sizes``
    (with a normal 95 % interval of the stratified estimate)."""
    out, est, var = {}, 0.0, 0.0
    total = sum(sizes.values())
    for s in STRATA:
        j = _judged(rows, s)
        sure = j["same_shot"] + j["other_shot"]
        out[s] = {"pairs": sizes[s], **j, "share_same_of_sure": j["same_shot"] / sure if sure else None}
        w, p = sizes[s] / total, j["share_same"]
        est += w * p
        var += w * w * p * (1 - p) / j["judged"]
    out["all"] = {"pairs": total, "precision": est,
                  "interval_95": [est - 1.959964 * np.sqrt(var), est + 1.959964 * np.sqrt(var)]}
    return out


def _judged(rows: list[dict], group: str) -> dict:
    """The judged count of ``group``'s rows (half = group), its same-shot, other-shot and
    unsure ones, and the share of same-shot pairs (an unsure one counted as not) with its
    Wilson interval (None without rows)."""
    lab = np.array([r["label"] for r in rows if r["half"] == group], dtype=int)
    same = int((lab == 1).sum())
    return {"judged": len(lab), "same_shot": same, "other_shot": int((lab == 0).sum()),
            "unsure": int((lab == -1).sum()), "share_same": same / len(lab) if len(lab) else None,
            "interval_95": list(wilson(same, len(lab))) if len(lab) else None}


def load(path: Path = DATA_OPTION) -> list[dict]:
    """The judged audit rows (unsure ones kept, as -1)."""
    return R.load_pairs(path, labels=(0, 1, -1))
