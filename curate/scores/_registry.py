"""The score registry: every risk score curate computes, in one table.

A *score kind* maps images (B, C, H, W) in [-1, 1] to one float64 number each, oriented
so that **higher = more at risk** (the model reproduces the image more easily, or the
image looks more like a training image). Each kind lives in one module of
:mod:`curate.scores` that defines its scorer and calls :func:`register` once; the
package imports the built-in modules, so ``import curate.scores`` fills the table.

Everything that offers a choice of score reads this table: ``curate score --score`` and
its options, the App plugin's form, the recipes' ``score.use`` and method specs,
:func:`curate.evaluate.run_methods` and the table of kinds in docs/scores.md. Nothing here imports
FiftyOne.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

#: Keyword arguments every scorer takes besides its kind's parameters.
COMMON = ("seed", "device", "progress")


@dataclass(frozen=True)
class Param:
    """One setting of a score kind.

    ``default`` fixes the type (int, float, str or bool). ``choices`` lists the allowed
    values; ``low``/``high`` bound numbers (inclusive unless ``open_low``/``open_high``).
    ``attr`` is the name under which a brain run stores it when ``name`` is taken there.
    """

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    attr: str | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def stored_as(self) -> str:
        return self.attr or self.name

    def check(self, value):
        """The value coerced to this parameter's type; ValueError saying what is allowed."""
        kind = self.type
        ok = True
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()
            value = int(value) if ok else value
        elif kind is float:
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            value = float(value) if ok else value
        elif kind is str:
            ok = isinstance(value, str)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.low is not None:
            ok = value > self.low if self.open_low else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.open_high else value <= self.high
        if not ok:
            raise ValueError(f"{self.name} must {self.requirement()}, got {value!r}")
        return value

    def requirement(self) -> str:
        """What a value must do, e.g. 'be an integer in 1..1000', 'lie in (0, 1]'."""
        if self.choices is not None:
            return "be one of " + ", ".join(map(repr, self.choices))
        what = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}[self.type]
        lo, hi = self.low, self.high
        if self.type is int and lo is not None and hi is not None and not (self.open_low or self.open_high):
            return f"be an integer in {lo:g}..{hi:g}"
        if lo is not None and hi is not None:
            return f"lie in {'(' if self.open_low else '['}{lo:g}, {hi:g}{')' if self.open_high else ']'}"
        if lo == 0 and self.open_low:
            return f"be a positive {what.split()[-1]}"
        if lo is not None:
            return f"be {what} {'>' if self.open_low else '>='} {lo:g}"
        if hi is not None:
            return f"be {what} {'<' if self.open_high else '<='} {hi:g}"
        return "be " + what


@dataclass
class Scored:
    """What a scorer returns for B images.

    values: (B,) float64 on the CPU, higher = more at risk; NaN where an image failed.
    errors: {image index: why it has no score}.
    extra: other (B,) float64 outputs by name (e.g. the tracker's ``generation_logp``).
    """

    values: torch.Tensor
    errors: dict[int, str] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreKind:
    """One registered score.

    Attributes:
        name: the key (``curate score --score NAME``, ``score.use = NAME``).
        summary: one line: what the stored value is, with its sign.
        source: where it comes from (paper, section).
        params: its settings, with defaults.
        scorer: ``scorer(model, images, *, seed, device, progress, **params) -> Scored``; images
            (B, C, H, W) in [-1, 1]; it chunks its own network calls; each image's
            randomness is keyed by its own bytes and ``seed``, so a score never depends
            on the batch.
        nfe: ``nfe(dim, params, model) -> float``: network evaluations per image (a JVP
            counts as one).
        brain_method: the FiftyOne brain method name of its runs.
        field: the default score field (default: ``name``).
        extras: names of further outputs a run may store (keys of ``Scored.extra``).
        group: kinds of one group with equal parameters share one computation
            (``run_methods``); the scorer's ``extra`` then holds every kind's values.
        text: ``text(params, dim) -> str``, the settings in a few words (default: k=v).
        aliases: former names that :func:`get` still accepts, with a DeprecationWarning.
    """

    name: str
    summary: str
    source: str
    params: tuple[Param, ...]
    scorer: Callable[..., Scored]
    nfe: Callable[[int, dict, Any], float]
    brain_method: str = ""
    field: str = ""
    extras: tuple[str, ...] = ()
    group: str = ""
    text: Callable[[dict, int], str] | None = None
    aliases: tuple[str, ...] = ()

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def describe(self, params: dict, dim: int) -> str:
        """The settings in a few words, for tables and logs."""
        if self.text is not None:
            return self.text(params, dim)
        return ", ".join(f"{k}={v}" for k, v in params.items())

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def resolve(self, given: dict | None = None, *, what: str | None = None) -> dict:
        """Every parameter: ``given`` checked and coerced, the rest at their defaults.

        Raises ValueError for a name the kind does not take or a value out of range.
        """
        given = dict(given or {})
        names = [p.name for p in self.params]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"{what or 'score ' + repr(self.name)} takes no setting(s) {unknown}; "
                             f"its settings are {names or 'none'}")
        return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in self.params}

    def __call__(self, model, images: torch.Tensor, *, seed: int = 0, device=None, progress: bool = False,
                 **params) -> Scored:
        """Score ``images`` (B, C, H, W) in [-1, 1] with ``model``; settings checked first."""
        from curate.models.base import check_model
        from curate.scores._common import check_image_batch

        check_model(model)
        check_image_batch(images)
        return self.scorer(model, images, seed=int(seed), device=device, progress=progress,
                           **self.resolve(params))


_KINDS: dict[str, ScoreKind] = {}
_ALIASES: dict[str, str] = {}  # former name -> name


def register(kind: ScoreKind) -> ScoreKind:
    """Add ``kind`` to the registry (its name must be new) and return it."""
    if not kind.name.isidentifier():
        raise ValueError(f"a score kind's name must be an identifier, got {kind.name!r}")
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"a score kind named {kind.name!r} is already registered")
    bad = [p.name for p in kind.params if p.name in COMMON]
    if bad:
        raise ValueError(f"score kind {kind.name!r}: {bad} are common to every scorer, not parameters")
    if not kind.brain_method:
        object.__setattr__(kind, "brain_method", "curate_" + kind.name)
    if not kind.field:
        object.__setattr__(kind, "field", kind.name)
    _KINDS[kind.name] = kind
    for old in kind.aliases:
        _ALIASES[old] = kind.name
    return kind


def unregister(name: str) -> None:
    """Remove a kind (for tests that register a toy one)."""
    kind = _KINDS.pop(name, None)
    for old in getattr(kind, "aliases", ()):
        _ALIASES.pop(old, None)


def get(name: str) -> ScoreKind:
    """The kind called ``name`` (or a former name of it, with a DeprecationWarning); ValueError
    listing the registered ones."""
    if isinstance(name, str) and name in _ALIASES and name not in _KINDS:
        import warnings

        warnings.warn(f"the score kind {name!r} is now called {_ALIASES[name]!r} (the name of the field it "
                      "writes); the old name goes in the next release", DeprecationWarning, stacklevel=2)
        name = _ALIASES[name]
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown score {name!r}; registered scores: {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Every registered kind's name, in registration order (built-ins first)."""
    return tuple(_KINDS)


def kinds() -> tuple[ScoreKind, ...]:
    """Every registered kind, in the order of :func:`names`."""
    return tuple(_KINDS.values())
