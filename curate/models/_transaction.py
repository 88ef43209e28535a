"""Replacing several files of a folder so that a crash at any instant leaves one complete set.

Every file is written to a temporary name in the same folder, fsynced, and renamed into
place in the order given (the caller puts the file that names the others last). While
the renames run, the folder's previous complete set stays hard-linked in ``.previous/``,
the fallback a reader uses when it finds the folder mixing two sets.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

PREVIOUS = ".previous"  # the last complete save, kept while a new one is renamed in


def replace_files(folder: Path, files: dict[str, Any], *, previous: list[str] | None) -> None:
    """Write ``files`` (``name -> bytes | (tensor dict, metadata)``, renamed in this order)
    into ``folder``, keeping the ``previous`` files (the folder's current complete set, or
    None when it has none) in ``.previous/`` until every rename is done."""
    _keep_previous(folder, previous)
    _atomic_files(folder, files)
    shutil.rmtree(folder / PREVIOUS, ignore_errors=True)  # the new set is complete


def _fsync_write(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _atomic_files(folder: Path, files: dict[str, Any]) -> None:
    """Write every ``name -> bytes | tensor dict with metadata`` to temporaries, then rename in order."""
    from safetensors.torch import save as st_save

    tmp_names = {}
    try:
        for name, payload in files.items():
            tmp = folder / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp_names[name] = tmp
            if isinstance(payload, bytes):
                data = payload
            else:
                tensors, meta = payload
                data = st_save(tensors, metadata=meta)
            _fsync_write(tmp, lambda f, d=data: f.write(d))
        for name, tmp in tmp_names.items():  # in the caller's order: the index file last
            os.replace(tmp, folder / name)
    finally:
        for tmp in tmp_names.values():
            if tmp.exists():
                tmp.unlink()
    try:  # make the renames durable where the platform allows
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _keep_previous(folder: Path, names: list[str] | None) -> None:
    """Hard-link the folder's current complete set (``names``) into ``.previous/`` (the
    fallback while the new files are renamed in). A folder that already mixes two sets
    (``names`` None) keeps the fallback it has."""
    if names is None:
        return
    tmp = folder / f"{PREVIOUS}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    for name in names:
        try:
            os.link(folder / name, tmp / name)
        except OSError:  # no hard links on this file system
            shutil.copy2(folder / name, tmp / name)
    shutil.rmtree(folder / PREVIOUS, ignore_errors=True)
    os.replace(tmp, folder / PREVIOUS)
