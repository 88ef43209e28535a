"""Reading weight files without executing code: sniff a file's kind from its first bytes,
refuse pickles whatever their name, and read safetensors after checking their framing.

The lowest layer of model loading: ``checkpoint`` and ``adapters`` both use it, and it
imports neither.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import torch

from curate.models._errors import CheckpointError, PickleRefusedError

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


def sniff(path: str | os.PathLike) -> str:
    """What a file holds, from its first bytes only: 'safetensors', 'pickle', 'torch-zip',
    'zip', 'json', 'numpy' or 'unknown'. Nothing is deserialised."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= n <= path.stat().st_size:
            return "safetensors"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                if any(name.endswith(".pkl") for name in z.namelist()):
                    return "torch-zip"
        except zipfile.BadZipFile:
            pass
        return "zip"
    if head[:6] == b"\x93NUMPY":
        return "numpy"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def refuse_pickle(path: str | os.PathLike) -> None:
    """Raise PickleRefusedError when ``path`` is (or is named like) a pickle."""
    path = Path(path)
    kind = sniff(path)
    if kind in ("pickle", "torch-zip") or (path.suffix.lower() in PICKLE_SUFFIXES and kind != "safetensors"):
        raise PickleRefusedError(
            f"{path} is a Python pickle ({kind}); loading it could run arbitrary code, so curate "
            "refuses. If you trust it, convert it once with "
            "curate.models.checkpoint.pickle_to_safetensors(src, dst) (torch.load(weights_only=True)) "
            "or save the weights with safetensors."
        )


def check_safetensors(path: Path) -> dict:
    """Validate a safetensors file's framing without loading tensors; return its header.

    Catches truncation precisely: the header declares every tensor's byte range.
    """
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    refuse_pickle(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is truncated or empty ({size} bytes): not a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if 8 + n > size:
            raise CheckpointError(f"{path} is truncated: its header needs {8 + n} bytes, the file has {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not a safetensors file (unreadable header: {e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path} is truncated: its tensors need {8 + n + end} bytes, the file has {size} "
            "(an interrupted copy or download?)"
        )
    return header


def read_safetensors(path: str | os.PathLike, device=None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, after the framing checks."""
    from safetensors import safe_open

    path = Path(path)
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device or "cpu")) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path} could not be read as safetensors: {e}") from None
    return tensors, meta
