"""Export what is left after cleaning."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def export_clean(samples, export_dir, *, dataset_type=None, label_field: str | None = "ground_truth",
                 exclude_tags=("duplicate",), overwrite: bool = False, **kwargs) -> int:
    """Export ``samples`` minus those tagged with any of ``exclude_tags``.

    Args:
        samples: a FiftyOne dataset or view.
        export_dir: the folder to write; refused if it exists and is not empty,
            unless ``overwrite=True`` (then it is replaced).
        dataset_type: a :mod:`fiftyone.types` class; default
            ``ImageClassificationDirectoryTree`` (one folder per ``label_field`` class).
        exclude_tags: tags whose samples are left out (e.g. add ``"high_risk"`` to drop
            every flagged image, not only the duplicates).
        **kwargs: passed to ``samples.export``.

    Returns:
        the number of exported samples.
    """
    import fiftyone.types as fot

    dataset_type = dataset_type or fot.ImageClassificationDirectoryTree
    if isinstance(dataset_type, str):
        dataset_type = getattr(fot, dataset_type, None) or _bad_type(dataset_type)
    out = Path(export_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            os.remove(out)
    view = samples.match_tags(list(exclude_tags), bool=False) if exclude_tags else samples
    if label_field is not None and label_field not in view.get_field_schema():
        raise ValueError(f"no label field {label_field!r}; pass label_field=")
    n = view.count()
    view.export(export_dir=str(out), dataset_type=dataset_type, label_field=label_field, **kwargs)
    return n


def _bad_type(name: str):
    raise ValueError(f"unknown fiftyone.types dataset type {name!r}")
