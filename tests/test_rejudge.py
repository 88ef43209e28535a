"""The blind second judging of the reporting sets (curate.bench._rejudge)."""
import csv

import numpy as np
import pytest

from curate.bench import _real_pairs_core as R
from curate.bench import _rejudge as J


def test_the_sample_is_seeded_and_drawn_from_each_reporting_set():
    rows = J.sample()
    assert rows == J.sample()  # seeded
    assert [r["shown"] for r in rows] != [r["shown"] for r in J.sample(seed=J.SEED + 1)]
    for name, (path, half) in J.SETS.items():
        mine = [r for r in rows if r["set"] == name]
        pool = {(r["a"], r["b"]): r["label"] for r in R.load_pairs(path, half)}
        assert len(mine) == J.PER_SET == len({(r["a"], r["b"]) for r in mine})
        assert all(pool[(r["a"], r["b"])] == r["label"] for r in mine)
    shown = [r["shown"] for r in rows]
    assert all(sorted(s) == sorted((r["a"], r["b"])) for s, r in zip(shown, rows))
    swapped = sum(s != (r["a"], r["b"]) for s, r in zip(shown, rows))
    assert 0.35 * len(rows) < swapped < 0.65 * len(rows)  # left/right at random
    sets = [r["set"] for r in rows[:60]]
    assert 15 < sets.count("first") < 45  # both sets mixed in one stream


def test_the_rest_is_every_other_pair_of_both_sets_once():
    first, rest = J.sample(), J.rest()
    assert rest == J.rest() and {r["stage"] for r in rest} == {"rest"}
    both = sorted((r["set"], r["a"], r["b"]) for r in first + rest)
    assert len(both) == len(set(both))  # no pair twice
    assert both == sorted((name, p["a"], p["b"]) for name, (path, half) in J.SETS.items()
                          for p in R.load_pairs(path, half))
    with pytest.raises(ValueError, match="stage"):
        J.stage_rows("all")


def test_collecting_one_stage_keeps_the_other(tmp_path):
    path = tmp_path / "twice.csv"
    old = [{**r, "rejudged": 1} for r in J.sample(per_set=2, seed=1)]
    J.write(old, path)
    rows = [{**r, "stage": "rest"} for r in J.sample(per_set=2, seed=2)]
    images = np.zeros((60000, 2, 2, 3), np.uint8)
    J.write_grids(images, rows, tmp_path / "g", per=10)
    with open(tmp_path / "g" / "batch_00.csv", newline="") as f:
        got = list(csv.DictReader(f))
    for r in got:
        r["label"] = "0"
    with open(tmp_path / "g" / "batch_00.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(got[0]))
        w.writeheader()
        w.writerows(got)
    J.collect(tmp_path / "g", rows, path)
    back = J.load(path)
    assert sorted((r["a"], r["b"], r["stage"], r["rejudged"]) for r in back) == sorted(
        [(r["a"], r["b"], "sample", 1) for r in old] + [(r["a"], r["b"], "rest", 0) for r in rows])


def test_the_grids_show_no_first_label_and_collect_checks_every_pair(tmp_path):
    rows = J.sample(per_set=4, seed=3)
    images = np.random.default_rng(0).integers(0, 256, (60000, 2, 2, 3), dtype=np.uint8)
    paths = J.write_grids(images, rows, tmp_path, per=5)
    assert [p.name for p in paths] == ["batch_00.png", "batch_01.png"]
    with open(tmp_path / "batch_00.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["n", "split_a", "index_a", "split_b", "index_b", "label"]  # no label, set or distance
    with pytest.raises(SystemExit, match="no label"):
        J.collect(tmp_path, rows, tmp_path / "out.csv")
    judged = [1, 0, "u", 1, 1, 0, 0, 1]
    for p in sorted(tmp_path.glob("batch_*.csv")):
        with open(p, newline="") as f:
            got = list(csv.DictReader(f))
        for r in got:
            r["label"] = judged[int(r["n"])]
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(got[0]))
            w.writeheader()
            w.writerows(got)
    done = J.collect(tmp_path, rows, tmp_path / "out.csv")
    assert [r["rejudged"] for r in done] == [1, 0, -1, 1, 1, 0, 0, 1]
    back = J.load(tmp_path / "out.csv")
    assert sorted((r["a"], r["b"], r["set"], r["label"], r["rejudged"]) for r in back) == \
        sorted((r["a"], r["b"], r["set"], r["label"], r["rejudged"]) for r in done)
    with pytest.raises(SystemExit, match="not the sample's pair"):
        J.collect(tmp_path, J.sample(per_set=4, seed=4), tmp_path / "out.csv")


def test_kappa_is_sklearns():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, 200)
    y = np.where(rng.random(200) < 0.8, x, 1 - x)
    assert J.kappa(x, y) == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)


def _rows(labels, rejudged, set_="first"):
    return [{"a": i, "b": 1000 + i, "set": set_, "label": a, "rejudged": b}
            for i, (a, b) in enumerate(zip(labels, rejudged))]


def test_the_agreement_and_the_ceiling_count_exactly():
    # 6 first positives: 4 kept, 1 called another shot, 1 unsure; 4 first negatives: 3 kept, 1 called the same
    rows = _rows([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, -1, 0, 0, 0, 1])
    a = J.agreement(rows)
    assert a["table"]["first 1 / second 1"] == 4 and a["table"]["first 1 / second unsure"] == 1
    assert a["table"]["first 0 / second 1"] == 1 and a["table"]["first 0 / second 0"] == 3
    assert a["positives_kept"] == pytest.approx(4 / 6) and a["negatives_kept"] == pytest.approx(3 / 4)
    assert a["ceiling"]["recall"] == pytest.approx(4 / 6) and a["ceiling"]["precision"] == pytest.approx(4 / 5)
    # over the 9 pairs judged sure twice: agreement 7/9, both say 'same' 5/9 and 5/9 of the time
    po, pe = 7 / 9, (5 / 9) * (5 / 9) + (4 / 9) * (4 / 9)
    assert a["kappa_sure"] == pytest.approx((po - pe) / (1 - pe))


def test_the_decisions_are_scored_on_the_consensus_apart_from_disputed_pairs():
    rows = _rows([1, 1, 1, 1, 0, 0], [1, 1, 0, -1, 0, 1])
    found = np.array([[0, 1000], [2, 1002], [3, 1003], [5, 1005]])  # pairs 0, 2, 3, 5
    d = J.decisions(rows, {"x": found})["x"]
    assert (d["first_labels"]["tp"], d["first_labels"]["fp"], d["first_labels"]["positives"]) == (3, 1, 4)
    assert (d["consensus"]["tp"], d["consensus"]["fp"], d["consensus"]["positives"]) == (1, 0, 2)
    assert (d["disputed"], d["disputed_found"]) == (3, 3)


def test_the_committed_second_judging_gives_each_reporting_set_its_ceiling():
    assert J.set_of(R.DATA, "reporting") == "first" and J.set_of(R.DATA_FRESH, "reporting") == "fresh"
    assert J.set_of(R.DATA, "tuning") is None
    assert J.noise_ceiling(R.DATA_FRESH, "reporting") == J.ceiling("fresh") and J.noise_ceiling(R.DATA, "tuning") is None
    with open(J.DATA_REJUDGED, newline="") as f:
        got = list(csv.DictReader(f))
    assert sum(r["stage"] == "sample" for r in got) == 2 * J.PER_SET
    # the committed pairs of each stage are exactly its seeded rows, with their first labels
    for stage in J.STAGES:
        got_stage = sorted((r["a"], r["b"], r["set"], r["label"]) for r in J.load() if r["stage"] == stage)
        if got_stage or stage == "sample":
            assert got_stage == sorted((r["a"], r["b"], r["set"], r["label"]) for r in J.stage_rows(stage))
    for name in J.SETS:
        mine = [r for r in got if r["set"] == name]
        pos = [r for r in mine if r["label"] == "1"]
        said_same = [r for r in mine if r["rejudged"] == "1"]
        c = J.ceiling(name)
        assert c["recall"] == sum(r["rejudged"] == "1" for r in pos) / len(pos)
        assert c["precision"] == sum(r["label"] == "1" for r in said_same) / len(said_same)
        assert c["pairs_judged_twice"] == len(mine)


@pytest.mark.parametrize("which,half,twice", [("first", "reporting", "first"), ("fresh", "reporting", "fresh"),
                                              ("first", "tuning", None)])
def test_the_end_to_end_scores_carry_their_sets_noise_ceiling(tmp_path, which, half, twice):
    from curate.bench import _real_pairs_band as B

    rows = R.load_pairs(B.SETS[which], half)
    res = B.scored({"all": np.ones(len(rows), bool)}, rows, which, tmp_path, None, None)
    assert res["rules"]["all"]["recall"] == 1.0
    assert res.get("noise_ceiling") == (J.ceiling(twice) if twice else None)
