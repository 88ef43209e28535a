"""Checks on the names curate writes into a dataset: fields, tags, saved views, paths.

Refused before anything is written:

* field names that are not Python identifiers (``a.b`` would address an embedded
  field, ``$x`` is a MongoDB operator), start with ``_`` (FiftyOne's private fields)
  or name a built-in sample field;
* tags and view names outside ``[A-Za-z0-9_-]`` (starting with a letter or ``_``);
* label values used as folder names that are not one plain path component.
"""
from __future__ import annotations

import re

# Fields every FiftyOne sample has: never written by curate, even with overwrite=True.
RESERVED_FIELDS = frozenset({"id", "_id", "filepath", "tags", "metadata", "created_at",
                             "last_modified_at", "media_type", "_media_type", "_rand", "_dataset_id"})
_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def check_field_name(name, what: str) -> None:
    """ValueError unless ``name`` is a plain, non-private, non-built-in field name."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{what} must be a plain field name (a Python identifier not starting "
                         f"with '_'), got {name!r}")
    if name in RESERVED_FIELDS:
        raise ValueError(f"{what} {name!r} is a built-in FiftyOne sample field; choose another name")


def check_tag(tag, what: str = "tag") -> None:
    """ValueError unless ``tag`` is letters, digits, ``_`` and ``-``, not starting with a digit or ``-``."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"{what} must be letters, digits, '_' or '-' (starting with a letter or '_'), "
                         f"got {tag!r}")


def check_path_component(value, what: str) -> None:
    """ValueError unless ``value`` can be one folder name inside an export folder."""
    bad = (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value
           or "\x00" in value or value != value.strip() or re.match(r"^[A-Za-z]:", value))
    if bad:
        raise ValueError(f"{what} {value!r} cannot be a folder name (empty, '.', '..', a path "
                         "separator or a drive); it would escape the export folder")


def require_score_field(samples, score_field: str | None) -> str:
    """``score_field`` (None: :func:`curate.scores.field_of` the default kind), checked to be a
    number field of ``samples``; the ValueError names the call that writes it."""
    import fiftyone.core.fields as fof

    from curate import scores

    field = scores.field_of(None) if score_field is None else score_field
    kind = samples.get_field_schema().get(field)
    if kind is None:
        known = {k.field: k.name for k in scores.kinds()}
        how = (f"curate.brain.compute_score(samples, model, {known[field]!r}) or "
               f"`curate score --dataset NAME --score {known[field]}`" if field in known
               else "curate.brain.compute_score(samples, model, KIND, score_field=...)")
        raise ValueError(f"no score field {field!r} on this collection; score it first: {how}")
    if not isinstance(kind, (fof.FloatField, fof.IntField)):
        raise ValueError(f"field {field!r} is a {type(kind).__name__}, not a number field")
    return field
