"""Every risk score curate computes, on image tensors, through one registry.

``curate.scores.get(name)(model, images, seed=0, **settings)`` scores images
(B, C, H, W) in [-1, 1] with any registered kind and returns a :class:`Scored`
(``values`` (B,) float64, higher = more at risk). :func:`names` lists the kinds;
:func:`table` describes them. To add a score: write one module that builds a
:class:`ScoreKind` and calls :func:`register`, and import it below (or from your own
code before use); the CLI, the App plugin, the recipes and ``curate.evaluate`` pick it up.
"""
from __future__ import annotations

from curate.scores._registry import Param, Scored, ScoreKind, get, kinds, names, register, unregister

# The built-in kinds register themselves on import.
from curate.scores import volume as _volume  # noqa: E402,F401  (the paper's first)
from curate.scores import denoising as _denoising  # noqa: E402,F401
from curate.scores import pia as _pia, flipd as _flipd, eps_norm as _eps_norm  # noqa: E402,F401
from curate.scores import reconstruction as _reconstruction  # noqa: E402,F401
from curate.scores import reproduction_probability as _reproduction_probability  # noqa: E402,F401

#: The kind the CLI and the App offer first: minus the denoising loss, the strongest cheap
#: score measured on duplicated images (digits: AUROC 0.976 for planted images against 0.31
#: for the paper's fast log growth). On CIFAR-10 at 8x8 without duplicates every score is
#: weak (evaluation AUROC 0.49-0.62; denoising 0.59): see docs/results.md.
DEFAULT_KIND = "denoising_score"

__all__ = ["Param", "Scored", "ScoreKind", "get", "kinds", "names", "register", "unregister", "table",
           "markdown_table", "DEFAULT_KIND", "resolve_kind", "field_of"]


def resolve_kind(kind: str | None = None) -> str:
    """``kind``, or :data:`DEFAULT_KIND` when None: the one place every function, command and
    App form that takes a score kind resolves its default."""
    return get(DEFAULT_KIND if kind is None else kind).name


def field_of(kind: str | None = None) -> str:
    """The score field a kind writes by default (:data:`DEFAULT_KIND`'s when None): every
    function that reads a score field (flag, dedupe's score-based keep rules, export,
    evaluation) defaults to this."""
    return get(resolve_kind(kind)).field


def table() -> list[dict]:
    """One row per kind: name, what the value is (higher = more at risk), settings with
    defaults, network evaluations per image at the defaults (for D = 3072) and source."""
    rows = []
    for k in kinds():
        d = k.defaults()
        rows.append({"name": k.name, "summary": k.summary, "settings": d, "field": k.field,
                     "nfe": k.nfe(3072, d, None), "source": k.source})
    return rows


def markdown_table() -> str:
    """The table of score kinds in docs/scores.md (a test keeps the page equal to it)."""
    lines = ["| score | what the stored value is (higher = more at risk) | defaults | NFE/img (D = 3072) | source |",
             "| --- | --- | --- | --- | --- |"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # a norm's bars are not column breaks

    for r in table():
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "-"
        lines.append(f"| `{r['name']}` | {cell(r['summary'])} | {cell(settings)} | {r['nfe']:g} | {cell(r['source'])} |")
    return "\n".join(lines) + "\n"
