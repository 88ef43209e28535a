"""`curate bench dedupe` end to end on an image tree the test writes: a handful of
synthetic photos (CIFAR's layout, no order.csv) plus planted edited copies; the scores
are checked against answers worked out here from the written files."""
import json

import numpy as np
from PIL import Image

from curate.duplicates import edits as E

N, COPIES, SEED = 16, 8, 2  # seed 2: 2 copies within the pixel threshold, none near it


def _tree(root):
    """N photos as root/train/<class>/NNNN.png (sorted order = the order written)."""
    photos = E.natural_like(N, seed=4)
    for i, p in enumerate(photos):
        folder = root / "train" / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p).save(folder / f"{i:04d}.png")
    from curate.data.cifar import tree_files

    return np.stack([np.asarray(Image.open(p)) for _, _, p in tree_files(root, "train")])


def test_curate_bench_dedupe_scores_planted_copies(fo, tmp_path, capsys):
    from curate.duplicates.choices import DEFAULT_THRESHOLD
    from curate.cli import main as cli

    photos = _tree(tmp_path / "cifar")
    out = tmp_path / "bench"
    assert cli(["bench", "dedupe", "--cifar-root", str(tmp_path / "cifar"), "--originals", str(N),
                "--copies", str(COPIES), "--seed", str(SEED), "--out", str(out), "--no-progress",
                "--scale", str(N + 4), "--index-sample", "5", "--edits", "classic"]) == 0
    r = json.loads((out / "results.json").read_text())
    copies, sources, edits = E.plant(photos, COPIES, SEED)  # what the benchmark planted
    assert [p["source"] for p in r["planted"]] == sources.tolist()
    written = np.stack([np.asarray(Image.open(out / "copies" / f"{j:04d}.png")) for j in range(COPIES)])
    np.testing.assert_array_equal(written, copies)
    # the descriptor finds every copy, with its source only
    d = r["methods"]["descriptor"]["score"]
    assert d["all"] == {"copies": COPIES, "found": COPIES, "recall": 1.0, "pairs": COPIES,
                        "precision": 1.0, "precision_strict": 1.0}
    assert d["missed"] == [] and d["wrong_pairs"] == [] and d["groups"] == COPIES
    # the pixel method finds exactly the copies within its RMS threshold of their source
    rms = np.sqrt((((copies.astype(float) - photos[sources].astype(float)) / 127.5) ** 2).mean((1, 2, 3)))
    within = rms <= DEFAULT_THRESHOLD["pixel"]
    p = r["methods"]["pixel"]["score"]
    assert p["missed"] == np.nonzero(~within)[0].tolist()
    assert p["all"]["recall"] == within.mean() and 0 < within.sum() < COPIES
    mirrored = np.array([any(k == "mirror" for k, _ in e) for e in edits])
    assert mirrored.any() and p["by_kind"]["mirror"]["found"] == 0  # pixels do not see a flip
    # --scale: every image of the tree (train only here), timed; unrelated photos, no pairs
    s = r["scale"]
    assert s["images"] == N and s["pairs"] == 0 and s["total_s"] > 0 and s["key_search_ball_tree"]["queries_timed"] == 5
    # the per-kind counts add up and the table was printed
    assert sum(b["copies"] for b in d["by_number_of_edits"].values()) == COPIES
    shown = capsys.readouterr().out
    assert "planted edited copies" in shown and "descriptor" in shown and "pixel" in shown
    assert not fo.list_datasets() or not any(n.startswith("curate-dedupe-bench") for n in fo.list_datasets())


def test_both_entry_points_share_one_definition():
    from curate.cli import build_parser
    from curate.bench.dedupe_options import parse_args

    argv = ["--cifar-root", "x", "--copies", "3", "--methods", "pixel"]
    via_cli = vars(build_parser().parse_args(["bench", "dedupe", *argv]))
    for k in ("command", "what", "func"):
        via_cli.pop(k)
    assert via_cli == vars(parse_args(argv))


def test_the_default_edits_are_the_real_pairs_model(tmp_path):
    """``--edits real`` (the default) plants :func:`edits.plant_real`'s copies, and the per-kind
    tables read each realistic edit as the kinds it visibly contains."""
    from curate.bench.dedupe import plant_copies, real_kinds
    from curate.bench.dedupe_options import parse_args

    assert parse_args(["--cifar-root", "x"]).edits == "real"
    photos = E.natural_like(30, seed=2)
    copies, sources, edits, paths = plant_copies(photos, 12, 4, tmp_path / "c")
    want, want_sources, params = E.plant_real(photos, 12, 4)
    np.testing.assert_array_equal(copies, want)
    assert sources.tolist() == want_sources.tolist()
    assert [[k for k, _ in e] for e in edits] == [[k for k, _ in real_kinds(p)] for p in params]
    assert real_kinds(E.identity_real()) == []
    p = dict(E.identity_real(), dx=1, mirror=True, quality=60)
    assert [k for k, _ in real_kinds(p)] == ["shift", "mirror", "reencode"]
