"""Scores, tables and image grids of the near-duplicate benchmark
(:mod:`curate.bench.dedupe`); the scores are defined in its docstring."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.duplicates.edits import KINDS


def group_index(groups: list[list[int]], n: int) -> np.ndarray:
    """(n,) group number of each item, -1 when in no group."""
    g = np.full(n, -1, dtype=np.int64)
    for k, members in enumerate(groups):
        g[list(members)] = k
    return g


def score(groups: list[list[int]], n_orig: int, sources: np.ndarray, edits: list,
          orig_groups: list[list[int]]) -> dict:
    """Recall and precision of ``groups`` (lists of item indices: originals 0..n_orig-1,
    copy j at n_orig + j) against the planted truth."""
    m = len(sources)
    g = group_index(groups, n_orig + m)
    og = group_index(orig_groups, n_orig)

    def accepted(j: int, x: int) -> tuple[bool, bool]:
        """(same source, same source or one of CIFAR's own duplicates of the source)."""
        s = sources[j]
        same = x == s or (x >= n_orig and sources[x - n_orig] == s)
        return same, same or (x < n_orig and og[s] >= 0 and og[x] == og[s])

    found = np.array([g[n_orig + j] >= 0 and g[n_orig + j] == g[sources[j]] for j in range(m)], dtype=bool)
    pairs_ok, pairs_strict, pairs_all = np.zeros(m), np.zeros(m), np.zeros(m)
    wrong = []
    for j in range(m):
        gj = g[n_orig + j]
        if gj < 0:
            continue
        for x in groups[gj]:
            if x == n_orig + j:
                continue
            strict, ok = accepted(j, x)
            pairs_all[j] += 1
            pairs_strict[j] += strict
            pairs_ok[j] += ok
            if not ok:
                wrong.append((int(n_orig + j), int(x)))

    def block(mask) -> dict:
        n_pairs = pairs_all[mask].sum()
        return {"copies": int(mask.sum()), "found": int(found[mask].sum()),
                "recall": float(found[mask].mean()) if mask.any() else None,
                "pairs": int(n_pairs),
                "precision": float(pairs_ok[mask].sum() / n_pairs) if n_pairs else None,
                "precision_strict": float(pairs_strict[mask].sum() / n_pairs) if n_pairs else None}

    kinds_of = [{k for k, _ in e} for e in edits]
    return {"all": block(np.ones(m, bool)),
            "by_kind": {k: block(np.array([k in ks for ks in kinds_of], dtype=bool)) for k in KINDS},
            "by_number_of_edits": {str(c): block(np.array([len(ks) == c for ks in kinds_of], dtype=bool))
                                   for c in sorted({len(ks) for ks in kinds_of})},
            "missed": [int(j) for j in np.nonzero(~found)[0]],
            "wrong_pairs": wrong, "groups": len(groups), "grouped_items": int((g >= 0).sum())}


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


def method_grids(images: np.ndarray, n: int, sources, sc: dict, own_groups: list, folder: Path,
                 method: str) -> None:
    """found / missed / wrong pairs and CIFAR's own groups of one method, as PNG grids."""
    missed = set(sc["missed"])
    found = [(int(sources[j]), n + j) for j in range(len(sources)) if j not in missed]
    pair_grid(images, found[:48], folder / f"{method}_found.png")
    pair_grid(images, [(int(sources[j]), n + j) for j in sc["missed"]][:48], folder / f"{method}_missed.png")
    pair_grid(images, sc["wrong_pairs"][:48], folder / f"{method}_wrong_pairs.png")
    pair_grid(images, [(g[0], x) for g in own_groups for x in g[1:]][:96], folder / f"{method}_cifar_own_groups.png")


def results_table(result: dict):
    """One rich table: per method and kind, recall, precision (lenient / strict), copies."""
    from rich.table import Table

    t = Table(title="dedupe on CIFAR-10 with planted edited copies (all pairs)")
    for c in ("method", "edits", "copies", "recall", "precision", "strict", "time s (CPU s)", "peak MB"):
        t.add_column(c, justify="right" if c not in ("method", "edits") else "left")

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    for method, r in result["methods"].items():
        sc = r["score"]
        rows = [("all", sc["all"])] + list(sc["by_kind"].items()) + \
               [(f"{k} edit{'s' if k != '1' else ''}", v) for k, v in sc["by_number_of_edits"].items()]
        for i, (name, b) in enumerate(rows):
            t.add_row(method if i == 0 else "", name, str(b["copies"]), f(b["recall"]), f(b["precision"]),
                      f(b["precision_strict"]), f"{r['seconds']:.1f} ({r['cpu_s']:.1f})" if i == 0 else "",
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
                     f"key search + verification {s['search_verify_s']:.0f} s, total {s['total_s']:.0f} s "
                     f"({s['total_cpu_s']:.0f} CPU-s), "
                     f"peak +{s['peak_mb']:.0f} MB; {s['pairs']} pairs in {s['groups']} groups; load average "
                     f"{s['load_average_before'][0]:.2f} before, {s['load_average_after'][0]:.2f} after")
        for index in ("exact", "ball_tree"):
            e = s[f"key_search_{index}"]
            lines.append(f"  key search alone, {index}: build {e['build_s']:.1f} s, "
                         f"{1e3 * e['s_per_query']:.2f} ms/query ({e['queries_timed']} timed) "
                         f"-> {e['all_queries_s_estimate']:.0f} s for all {s['images']}")
    return lines
