"""Where the files curate ships beside its code are: the recipe presets (the top-level
``recipes/`` folder) and the FiftyOne App plugin (``plugins/curate/``).

git holds one copy of each, at the top of the source checkout. Building a wheel copies
them into the package as ``curate/_shipped/<same path>`` (``setup.py`` reads the two
names below), so a non-editable install finds them too. No symlinks: those break on
Windows and with ``core.symlinks=false``.

Only ``pathlib`` here: ``setup.py`` runs this file while building, before curate's
dependencies exist.
"""
from __future__ import annotations

from pathlib import Path

#: The top-level folders of the checkout that travel with the package.
SHIPPED_FOLDERS = ("recipes", "plugins/curate")
#: Their folder inside an installed package.
WHEEL_FOLDER = "_shipped"

_PACKAGE = Path(__file__).resolve().parent


def shipped_path(folder: str) -> Path:
    """The checkout's top-level ``folder`` (one of SHIPPED_FOLDERS) when curate runs from a
    source checkout (an editable install or PYTHONPATH), else the installed package's copy."""
    if folder not in SHIPPED_FOLDERS:
        raise ValueError(f"{folder!r} is not shipped with curate (one of {SHIPPED_FOLDERS})")
    root = _PACKAGE.parent
    # pyproject.toml tells a checkout from site-packages, where a stray top-level
    # "recipes" folder of another distribution could sit beside curate.
    if (root / "pyproject.toml").is_file() and (root / folder).is_dir():
        return root / folder
    return _PACKAGE / WHEEL_FOLDER / folder
