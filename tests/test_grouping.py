"""Pairs to groups: connected components (the former rule) against anchored groups, where
every member is a verified duplicate of the kept image, checked by brute force."""
import itertools

import numpy as np
import pytest

from curate.duplicates.grouping import anchored_groups, components


def test_a_chain_of_look_alikes_is_not_one_group():
    # 0 ~ 1 ~ 2 ~ 3 (a chain): single link joins all four; anchored groups keep 0 with 1 and 2 with 3
    pairs = [(0, 1), (1, 2), (2, 3)]
    assert components(4, pairs) == [[0, 1, 2, 3]]
    assert anchored_groups(4, pairs) == [[0, 1], [2, 3]]
    # the keep rule's order decides who anchors: with 1 first, 1 keeps 0 and 2; 3 is left alone
    assert anchored_groups(4, pairs, order=[1, 0, 2, 3]) == [[1, 0, 2]]


def test_a_clique_of_copies_stays_one_group():
    pairs = list(itertools.combinations(range(5), 2))
    assert anchored_groups(7, pairs) == [[0, 1, 2, 3, 4]]


def test_random_graphs_satisfy_the_rule_by_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 30))
        m = int(rng.integers(0, 3 * n))
        pairs = {tuple(sorted(rng.choice(n, 2, replace=False).tolist())) for _ in range(m)}
        order = rng.permutation(n)
        groups = anchored_groups(n, pairs, order=order)
        members = [i for g in groups for i in g]
        assert len(members) == len(set(members))  # disjoint
        rank = {int(v): r for r, v in enumerate(order)}
        for g in groups:
            kept = g[0]
            assert len(g) >= 2
            assert all(tuple(sorted((kept, j))) in pairs for j in g[1:])  # every member: a duplicate of the kept
            assert all(rank[kept] < rank[j] for j in g[1:])  # the kept one comes first in the order
        # maximal: no pair is left with both ends outside every group
        grouped = set(members)
        assert not [p for p in pairs if p[0] not in grouped and p[1] not in grouped]
        # every group lies inside one connected component
        comp = {i: c for c, mem in enumerate(components(n, pairs)) for i in mem}
        assert all(len({comp[i] for i in g}) == 1 for g in groups)


def test_order_must_be_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        anchored_groups(3, [(0, 1)], order=[0, 0, 1])
