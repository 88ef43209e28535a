"""The verifier option's audit (curate.bench._option_audit): the judging sample, the
interval, the pre-registered rule, and the judged pairs shipped with it."""
import numpy as np
import pytest

from curate.bench import _option_audit as A


def test_the_wilson_interval_is_scipys():
    from scipy.stats import binomtest

    for k, n in ((114, 150), (5, 8), (0, 12), (30, 30)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        np.testing.assert_allclose(A.wilson(k, n), (ci.low, ci.high), atol=1e-6)


def test_the_judging_rows_are_a_seeded_sample_of_the_added_and_every_dropped_pair():
    added = np.array([(i, i + 50_000) for i in range(40)])
    dropped = np.array([(1, 2), (3, 4), (5, 50_001)])
    ch = {"added": added, "dropped": dropped}
    rows = A.judging_rows(ch, n=10, seed=3)
    assert rows == A.judging_rows(ch, n=10, seed=3)
    assert rows != A.judging_rows(ch, n=10, seed=4)
    got = [(r["a"], r["b"], r["group"]) for r in rows]
    assert [g for *_, g in got] == ["added"] * 10 + ["dropped"] * 3
    assert {(a, b) for a, b, g in got if g == "added"} <= {tuple(p) for p in added.tolist()}
    assert len({(a, b) for a, b, _ in got}) == 13
    assert {(a, b) for a, b, g in got if g == "dropped"} == {(1, 2), (3, 4), (5, 50_001)}
    assert [r["kind"] for r in rows if r["group"] == "dropped"] == [A.R.pair_kind(a, b) for a, b, g in got if
                                                                   g == "dropped"]
    assert (A.R.pair_kind(1, 2), A.R.pair_kind(5, 50_001), A.R.pair_kind(50_003, 50_001)) == ("train-train", "test-train",
                                                                             "test-test")


def _rows(added, dropped=()):
    return [{"label": y, "half": "added"} for y in added] + [{"label": y, "half": "dropped"} for y in dropped]


def test_the_judging_rows_leave_out_judged_pairs_and_images_kept_apart():
    added = np.array([(i, i + 50_000) for i in range(40)])
    ch = {"added": added, "dropped": np.array([(1, 2), (3, 4)])}
    judged, apart = {(0, 50_000), (7, 50_007)}, {9, 50_011, 3}
    rows = A.judging_rows(ch, n=100, seed=1, judged=judged, apart=apart)
    got = {(r["a"], r["b"]) for r in rows}
    want = {tuple(p) for p in added.tolist()} - judged - {(3, 50_003), (9, 50_009), (11, 50_011)} | {(1, 2)}
    assert got == want


def test_the_rule_counts_an_unsure_pair_as_not_the_same_shot_and_wants_the_time():
    ok = _rows([1] * 17 + [0] * 2 + [-1])  # 17 / 20 = 0.85: enough, the unsure one against it
    assert A.verdict(ok, 250.0)["rule"]["becomes_default"]
    assert A.verdict(ok, 250.0)["added"]["unsure"] == 1
    assert not A.verdict(_rows([1] * 16 + [0] * 2 + [-1] * 2), 250.0)["rule"]["becomes_default"]
    assert not A.verdict(ok, 301.0)["rule"]["becomes_default"]  # too slow
    v = A.verdict(ok, None)  # no time given: no verdict either way on it
    assert v["rule"]["precise_enough"] and v["rule"]["fast_enough"] and not v["rule"]["becomes_default"]


def test_the_shipped_audit_is_well_formed_and_says_no():
    rows = A.load()
    pairs = [(r["a"], r["b"]) for r in rows]
    assert len(pairs) == len(set(pairs)) and all(a < b for a, b in pairs)
    assert {r["half"] for r in rows} == set(A.GROUPS) and {r["label"] for r in rows} <= {1, 0, -1}
    assert all(r["kind"] == A.R.pair_kind(r["a"], r["b"]) for r in rows)
    v = A.verdict(rows, 288.1)
    assert v["added"]["judged"] == A.SAMPLE
    assert v["added"]["share_same"] < A.PRECISION_NEEDED and not v["rule"]["becomes_default"]


@pytest.mark.parametrize("group", A.GROUPS)
def test_the_verdict_counts_each_group_apart(group):
    rows = _rows([1, 0], [1, 1, -1]) if group == "dropped" else _rows([1, 1, 0, -1])
    v = A.verdict(rows, 100.0)[group]
    labels = [r["label"] for r in rows if r["half"] == group]
    assert (v["same_shot"], v["other_shot"], v["unsure"]) == (labels.count(1), labels.count(0), labels.count(-1))


def test_the_fine_tuned_options_audit_is_well_formed_apart_from_earlier_judgements_and_says_no():
    """Its pairs were never judged in another file, none touches an image series its network
    was trained on (as drawn), and the pre-registered rule refuses it, below the shipped
    option's share too."""
    from curate.bench import _verifier_finetune as F

    rows = A.load(A.DATA_FINETUNED)
    pairs = {(r["a"], r["b"]) for r in rows}
    assert len(pairs) == len(rows) and {r["half"] for r in rows} == set(A.GROUPS)
    assert A.R.JUDGED_IN_ORDER[-1] == A.DATA_FINETUNED.name
    assert not pairs & A.R.judged_pairs(A.DATA_FINETUNED.name)
    trained = {x for r in F.judged_rows() if r["trainable"] and r["label"] >= 0 for x in (r["a"], r["b"])}
    assert not {x for p in pairs for x in p} & trained
    v = A.verdict(rows, 288.1)
    assert v["added"]["judged"] == A.SAMPLE and not v["rule"]["becomes_default"]
    assert v["added"]["share_same"] < A.OPTION_SHARE
