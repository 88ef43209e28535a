"""curate._rng.mix_ints (the seed of training's and sampling's generators) is splitmix64
over its integers, checked against a plain-Python reference on many random inputs."""
import random

from curate._rng import mix_ints

GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def splitmix_reference(*values: int) -> int:
    """The former curate.sample._mix, in Python ints."""
    h = GOLDEN
    for v in values:
        h = (h ^ v) & MASK64
        h = (h + GOLDEN) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def test_reference_is_splitmix64():
    # splitmix64 seeded with 0 outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...;
    # one value 0 mixes the state 2 * golden, i.e. the second output.
    assert splitmix_reference(0) == 0x6E789E6AA1B965F4
    assert splitmix_reference() == GOLDEN & ((1 << 63) - 1)


def test_mix_ints_matches_the_reference():
    rng = random.Random(20261130)
    edges = [0, 1, -1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
    cases = [(), *[(v,) for v in edges], tuple(edges)]
    for _ in range(2000):
        n = rng.randint(1, 5)
        kind = rng.choice(["small", "u64", "signed", "edge"])
        if kind == "small":  # seeds, steps, streams and batch indices as training and sampling pass them
            vals = [rng.randrange(0, 100_000) for _ in range(n)]
        elif kind == "u64":
            vals = [rng.getrandbits(64) for _ in range(n)]
        elif kind == "signed":
            vals = [rng.randrange(-(2**63), 2**63) for _ in range(n)]
        else:
            vals = [rng.choice(edges) for _ in range(n)]
        cases.append(tuple(vals))
    for vals in cases:
        got = mix_ints(*vals)
        assert isinstance(got, int) and 0 <= got < 2**63, vals
        assert got == splitmix_reference(*vals), vals


def test_nearby_inputs_give_unrelated_seeds():
    seeds = {mix_ints(0, step) for step in range(1000)} | {mix_ints(1, step) for step in range(1000)}
    assert len(seeds) == 2000
