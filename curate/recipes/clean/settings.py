"""What the clean-and-retrain loop's modules all need: the arms (one definition), the
memorization criteria, the score settings line, the dedupe call's settings and the names
of per-arm, per-seed stages and files. Imports none of the loop's modules, so they stay
free of a cycle."""
from __future__ import annotations

from curate.memorization import CRITERIA, RMS_THRESHOLD  # noqa: F401 (the loop reads every criterion)
from curate.recipes import _config

#: The arms: what each model trains on. Only the scores and the dedupe decide what goes.
ARMS = ("baseline", "dedupe", "dedupe_score", "dedupe_random")
ARM_LABEL = {
    "baseline": "baseline (every training sample)",
    "dedupe": "dedupe (whole set de-duplicated)",
    "dedupe_score": "dedupe + top-k unique by score",
    "dedupe_random": "dedupe + k unique at random",
}
#: Tags whose samples an arm leaves out (set by the ``clean`` stage).
ARM_EXCLUDE = {
    "baseline": [],
    "dedupe": ["duplicate"],
    "dedupe_score": ["duplicate", "high_risk"],
    "dedupe_random": ["duplicate", "random_removed"],
}
#: The arm whose training set is written to ``export/`` (and trains on the re-imported export).
EXPORTED_ARM = "dedupe_score"
#: With ``clean.constant_size``, the arms whose k removed images are replaced by k fresh
#: images of the unused pool (tag ``replacement``), so that these arms, and ``dedupe``,
#: train on sets of one size and differ only in *which* images were removed.
REPLACED_ARMS = ("dedupe_score", "dedupe_random")


def constant_size(cfg: dict) -> bool:
    """Whether the removals by score and at random are replaced from the pool (``data.n_pool``)."""
    return bool(cfg["clean"].get("constant_size", False))


def images_to_load(cfg: dict) -> int | None:
    """How many source images a recipe's ``build`` loads: ``data.n_images`` followed by the
    ``data.n_pool`` held out as replacements; None (all) when ``data.n_images`` is 0."""
    d = cfg["data"]
    return int(d["n_images"]) + int(d.get("n_pool", 0)) if int(d["n_images"]) else None


#: The arms compared to ask what the score adds beyond de-duplication.
BASE_ARM, SCORE_ARM, RANDOM_ARM = "dedupe", "dedupe_score", "dedupe_random"
#: Score-ranked removal should cut memorized samples at least this many times as much as random removal.
TARGET_FACTOR = 2.0

CRITERION_TEXT = {
    "carlini": "Carlini et al. 2023: |x - nn1| < 0.5 x mean distance to the 50 nearest training images",
    "gu": "Gu et al. 2023: |x - nn1| / |x - nn2| < 1/3",
    "rms": f"RMS distance to nn1 < {RMS_THRESHOLD} on the [-1, 1] scale (no false positives on held-out CIFAR-10)",
}
assert set(CRITERION_TEXT) == set(CRITERIA), "one sentence per memorization criterion"


def criterion_name(crit: str) -> str:
    """A criterion's name in prose: Carlini, Gu, RMS."""
    return crit.upper() if crit == "rms" else crit.capitalize()


def run_key(arm: str, seed: int) -> str:
    """The name of one model: an arm trained with one training seed (``dedupe_score_s1``)."""
    return f"{arm}_s{int(seed)}"


def sampling_seed(train_seed: int) -> int:
    """The sampling seed of every arm's model of one training seed: the arms start their
    samples from the same noise, so their counts are compared sample by sample."""
    return int(train_seed) + 1


def bootstrap_seed(seed: int, train_seed: int) -> list[int]:
    """numpy seed of the bootstrap resamples of one training seed (the same for every arm)."""
    return [int(seed), int(train_seed)]


def dedupe_kwargs(cfg: dict) -> dict:
    """The keyword arguments of :func:`curate.brain.dedupe` for the ``dedupe`` arm: every pair
    of the whole training set is searched, all but one member of each group tagged
    ``duplicate``. ``keep="first"`` (the earliest sample, i.e. the original, not a planted
    copy) keeps the arm free of the score, so the score's own effect is what the
    ``dedupe_score`` arm adds.

    ``clean.dedupe_method`` (default the descriptor), ``clean.dedupe_threshold`` (absent:
    the method's default) and ``clean.dedupe_mirror`` (absent: ``model.flip`` -- a model
    trained with flips sees a mirrored copy as the same image)."""
    c = cfg["clean"]
    method = c.get("dedupe_method", "descriptor")
    kw = {"method": method, "query_tag": None, "tag": "duplicate", "keep": "first",
          "group_field": "duplicate_group", "threshold": c.get("dedupe_threshold")}
    if c.get("dedupe_grouping"):  # absent: dedupe's default (anchored groups)
        kw["grouping"] = c["dedupe_grouping"]
    if kw["threshold"] is not None:
        kw["threshold"] = float(kw["threshold"])
    if method == "descriptor":
        kw["mirror"] = bool(c.get("dedupe_mirror", cfg["model"].get("flip", False)))
        kw["brain_key"] = "dedupe"  # the keys' similarity index; the run also records the applied threshold
    return kw


def check_dedupe(cfg: dict) -> None:
    """ConfigError unless the ``clean.dedupe_*`` settings are ones :func:`dedupe_kwargs` can use."""
    from curate.duplicates.choices import METHODS

    c = cfg["clean"]
    if c.get("dedupe_method", "descriptor") not in METHODS:
        raise _config.ConfigError(f"clean.dedupe_method must be one of {METHODS}, got {c['dedupe_method']!r}")
    t = c.get("dedupe_threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0):
        raise _config.ConfigError(f"clean.dedupe_threshold must be a number >= 0, got {t!r}")
    from curate.duplicates.choices import GROUPINGS

    if c.get("dedupe_grouping", GROUPINGS[0]) not in GROUPINGS:
        raise _config.ConfigError(f"clean.dedupe_grouping must be one of {GROUPINGS}, got {c['dedupe_grouping']!r}")
    if not isinstance(c.get("dedupe_mirror", False), bool):
        raise _config.ConfigError(f"clean.dedupe_mirror must be true or false, got {c['dedupe_mirror']!r}")


def check_pool(cfg: dict) -> None:
    """ConfigError unless ``clean.constant_size`` has a pool of at least ``clean.top_k`` images."""
    c, d = cfg["clean"], cfg["data"]
    n_pool = d.get("n_pool", 0)
    if isinstance(n_pool, bool) or not isinstance(n_pool, int) or n_pool < 0:
        raise _config.ConfigError(f"data.n_pool must be an int >= 0, got {n_pool!r}")
    if not isinstance(c.get("constant_size", False), bool):
        raise _config.ConfigError(f"clean.constant_size must be true or false, got {c['constant_size']!r}")
    if constant_size(cfg) and n_pool < int(c["top_k"]):
        raise _config.ConfigError(f"clean.constant_size replaces the top_k = {c['top_k']} removed images from the "
                                  f"pool, but data.n_pool = {n_pool}; set data.n_pool >= clean.top_k")


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct non-negative ints (ConfigError otherwise)."""
    if (not isinstance(seeds, list) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise _config.ConfigError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _config.ConfigError(f"seeds must be distinct, got {seeds!r}")
    return [int(s) for s in seeds]


def fill_score_settings(cfg: dict) -> None:
    """Give ``[score.<kind>]`` of every registered score kind its defaults where the preset
    does not set them, so ``score.use`` can name any kind and ``--set score.<kind>.<key>=``
    reaches each setting."""
    from curate import scores

    s = cfg.setdefault("score", {})
    for kind in scores.kinds():
        table = s.setdefault(kind.name, {})
        for key, value in kind.defaults().items():
            table.setdefault(key, value)


def score_kind_settings(s: dict):
    """(kind, its checked settings) of a ``[score]`` table (``use`` empty or absent: the shared
    default kind, :data:`curate.scores.DEFAULT_KIND`); ConfigError when they are wrong."""
    from curate import scores

    try:
        kind = scores.get(scores.resolve_kind(s.get("use") or None))
        return kind, kind.resolve(s.get(kind.name, {}), what=f"[score.{kind.name}]")
    except ValueError as e:
        raise _config.ConfigError(f"score.use: {e}") from None


def score_settings(s: dict) -> str:
    """One line that says how the score was computed (for logs, plots and the report)."""
    kind, params = score_kind_settings(s)
    return f"{kind.name} ({kind.describe(params, 0)})"
