"""Export what is left after cleaning."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def export_clean(samples, export_dir, *, dataset_type=None, label_field: str | None = None,
                 exclude_tags=("duplicate",), overwrite: bool = False, **kwargs) -> int:
    """Export ``samples`` minus those tagged with any of ``exclude_tags``.

    A labelled collection exports as one folder per class; one without labels (the usual
    case for an unconditional model) as a plain folder of its images, under their own file
    names (FiftyOne's ``ImageDirectory``).

    Everything is checked before anything is written: an export folder that exists
    and is not empty (unless ``overwrite=True``), one that is a symbolic link, one
    that holds the dataset's own images (overwriting would delete them), and label
    values that would become folder names escaping the export folder (``..``,
    ``a/b``, absolute paths) are refused with a ValueError / FileExistsError.

    Args:
        samples: a FiftyOne dataset or view.
        export_dir: the folder to write; refused if it exists and is not empty,
            unless ``overwrite=True`` (then it is replaced).
        dataset_type: a :mod:`fiftyone.types` class (or its name); default
            ``ImageClassificationDirectoryTree`` (one folder per class) when there is a label
            field, else ``ImageDirectory``.
        label_field: the classification field to export; None: ``ground_truth`` when the
            collection has that classification field, else its only classification field,
            else none (images only).
        exclude_tags: tags whose samples are left out (e.g. add ``"high_risk"`` to drop
            every flagged image, not only the duplicates).
        **kwargs: passed to ``samples.export``.

    Returns:
        the number of exported samples.
    """
    import fiftyone.types as fot

    if isinstance(dataset_type, str):
        dataset_type = getattr(fot, dataset_type, None) or _bad_type(dataset_type)
    if label_field is None and dataset_type is not fot.ImageDirectory:
        label_field = _label_field_of(samples)
    if dataset_type is None:
        dataset_type = fot.ImageDirectory if label_field is None else fot.ImageClassificationDirectoryTree
    out = Path(export_dir).expanduser()
    if out.is_symlink():
        raise ValueError(f"{out} is a symbolic link; pass the folder it points to, or another folder")
    out = out.absolute()
    view = samples.match_tags(list(exclude_tags), bool=False) if exclude_tags else samples
    if label_field is not None and label_field not in view.get_field_schema():
        raise ValueError(f"no label field {label_field!r}; pass label_field= (or leave it None to export "
                         "the images without labels)")
    if label_field is not None and "DirectoryTree" in dataset_type.__name__:
        from curate.brain._names import check_path_component

        for label in set(view.distinct(f"{label_field}.label")):
            check_path_component(label, f"label in {label_field!r}")
    real = os.path.realpath(out)
    inside = [p for p in samples._dataset.values("filepath")
              if os.path.realpath(p).startswith(real.rstrip(os.sep) + os.sep)]
    if inside:
        raise ValueError(f"{out} holds {len(inside)} of the dataset's own images (e.g. {inside[0]}); "
                         "export to a folder outside the dataset's media")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            os.remove(out)
    n = view.count()
    if label_field is not None:
        kwargs["label_field"] = label_field
    view.export(export_dir=str(out), dataset_type=dataset_type, **kwargs)
    return n


def _label_field_of(samples) -> str | None:
    """``ground_truth`` if it is a classification field, else the only classification field, else None."""
    import fiftyone.core.fields as fof
    import fiftyone.core.labels as fol

    fields = [name for name, f in samples.get_field_schema().items()
              if isinstance(f, fof.EmbeddedDocumentField) and f.document_type is fol.Classification]
    if "ground_truth" in fields:
        return "ground_truth"
    return fields[0] if len(fields) == 1 else None


def _bad_type(name: str):
    raise ValueError(f"unknown fiftyone.types dataset type {name!r}")
