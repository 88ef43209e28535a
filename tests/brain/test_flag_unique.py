"""flag_high_risk(unique=True): the k best images, each duplicate group counted once."""
import numpy as np
import pytest

from curate.brain import flag_high_risk


def test_unique_top_k_counts_groups_not_copies(fo, digits_ds):
    ds = digits_ds
    ids = ds.values("id")
    rng = np.random.default_rng(7)
    scores = rng.normal(size=len(ids))
    groups = [None] * len(ids)
    # Three groups: the 4 best samples are one group, then a pair, and one group in the middle.
    order = np.argsort(-scores)
    for i in order[:4]:
        groups[i] = 0
    for i in order[5:7]:
        groups[i] = 1
    for i in order[[20, 40]]:
        groups[i] = 2
    ds.set_values("s", scores.tolist())
    ds.set_values("duplicate_group", groups)
    flagged = set(flag_high_risk(ds, "s", top_k=3, unique=True).values("id"))
    # Independently: walk the ranking, one slot per image (group or lone sample).
    want, slots = set(), []
    for i in order:
        key = ("g", groups[i]) if groups[i] is not None else ("s", i)
        if key not in slots and len(slots) < 3:
            slots.append(key)
        if key in slots:
            want.add(ids[i])
    assert flagged == want
    assert len(flagged) == 4 + 1 + 2 + 0 and groups[order[20]] == 2 and ids[order[20]] not in flagged
    # Without unique the 3 best samples are copies of one image.
    assert set(flag_high_risk(ds, "s", top_k=3).values("id")) == {ids[i] for i in order[:3]}
    with pytest.raises(ValueError, match="give top_k"):
        flag_high_risk(ds, "s", percentile=90, unique=True)
    with pytest.raises(ValueError, match="needs the duplicate groups in 'grp'"):
        flag_high_risk(ds, "s", top_k=3, unique=True, group_field="grp")
