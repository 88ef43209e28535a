"""The verifier fine-tuned on judged pairs (curate.bench._verifier_finetune): seeded, it
learns what the judged pairs say, its folds keep image series whole, its training set
never touches a reporting set, and the logit rule picks what its definition says."""
import numpy as np
import pytest
import torch

from curate.bench import _pair_verifier as P
from curate.bench import _real_pairs_core as R
from curate.bench import _verifier_finetune as F
from curate.duplicates import edits


def test_finetuning_is_seeded_and_learns_the_judged_pairs():
    """From an untrained network: two runs agree bit for bit, and on held-out pairs an edited
    copy outscores another photo far more often than chance (a mutant that never steps fails)."""
    torch.set_num_threads(1)
    photos = edits.natural_like(120, seed=6)
    copies = np.stack([edits.apply_real(im, edits.draw_real(np.random.default_rng((1, i)))) for i, im in
                       enumerate(photos)])
    images = np.concatenate([photos, copies])
    same = np.array([(i, 120 + i) for i in range(120)])
    other = np.array([(i, 120 + (i + 7) % 120) for i in range(120)])
    pairs = np.concatenate([same[:80], other[:80]])
    labels = np.repeat([1, 0], 80)
    def untrained():
        torch.manual_seed(3)
        return P.network()

    nets = [F.finetune(untrained(), images, pairs, labels, steps=40, progress=p) for p in (False, True)]
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in nets[0].parameters())
    s_same, s_other = P.score(nets[0], images, same[80:]), P.score(nets[0], images, other[80:])
    assert (s_same[:, None] > s_other[None, :]).mean() > 0.8
    with pytest.raises(ValueError, match="same-shot and other-shot"):
        F.finetune(P.network(), images, pairs, np.ones(160, dtype=int), steps=1)


def test_the_training_set_never_touches_a_reporting_set():
    """No trainable judged pair shares an image series (component of all judged pairs) with a
    reporting set's image, and none is a reporting half's row; reporting halves are not sources."""
    rows = F.judged_rows()
    reporting = [r for path, half in F.REPORTING for r in F._rows(path, half)]
    assert len(reporting) > 900 and any(not r["trainable"] for r in rows)
    comp = R.components([(r["a"], r["b"]) for r in rows + reporting])
    touched = {comp[x] for r in reporting for x in (r["a"], r["b"])}
    train = [r for r in rows if r["trainable"]]
    assert len(train) > 500 and all(comp[r["a"]] not in touched for r in train)
    assert not {(r["a"], r["b"]) for r in train} & {(r["a"], r["b"]) for r in reporting}
    assert {r["source"] for r in rows} == {s[0] for s in F.SOURCES}


def test_folds_keep_every_image_series_in_one_fold():
    rows = F.judged_rows()
    fold = F.folds(rows)
    comp = R.components([(r["a"], r["b"]) for r in rows])
    seen: dict = {}
    for r, f in zip(rows, fold.tolist()):
        assert seen.setdefault(comp[r["a"]], f) == f
    assert set(fold.tolist()) == set(range(F.FOLDS))


def test_the_logit_rule_picks_the_lowest_logit_whose_share_is_enough():
    """Band additions (the audit's and the training sample's): logits 0.5 (other), 1.5 (unsure),
    2.5 (same) x9, 3.5 (other): at >= 1 the share is 9/11, at >= 2 9/10 = 0.9 (enough); beyond:
    never enough -> None. Rows of other sources or groups do not count."""
    def row(label, source="option_audit", half="added"):
        return {"label": label, "source": source, "half": half}

    rows = [row(0), row(-1)] + [row(1)] * 8 + [row(1, "option_train", "tuning"), row(0)] + [
        row(0), row(1), row(0, half="dropped"), row(0, "band_tuning")]
    logits = np.array([0.5, 1.5] + [2.5] * 9 + [3.5, 6.0, 6.0, 9.0, 9.0])
    distance = np.array([0.3] * 12 + [0.4, 0.4, 0.3, 0.3])
    got = F.choose_logits(logits, rows, distance, band_end=0.35)
    assert got["band"]["logit"] == 2.0 and got["band"]["judged"] == 12 and got["band"]["same_shot"] == 9
    assert got["band"]["at"][1.0] == {"kept": 11, "same_shot": 9, "share": 9 / 11}
    assert got["beyond"]["logit"] is None and got["beyond"]["at"][6.0] == {"kept": 2, "same_shot": 1, "share": 0.5}

