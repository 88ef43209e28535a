"""Checkpoints that load without executing code: safetensors tensors + JSON.

A curate checkpoint is a folder::

    config.json             {"format": "curate.unet", "model": {...U-Net config...}, "step": N,
                             "save_id": "...", "train": {...settings...}, "files": [...]}
    model.safetensors       the trained weights
    ema.safetensors         the EMA weights (what load_model returns by default)
    optimizer.safetensors   the optimizer's tensors (Adam moments, step counts)
    optimizer.json          the optimizer's structure and hyper-parameters, tensors by name

Every file is written to a temporary name in the same folder and renamed into place
(``config.json`` last); every safetensors file carries the ``save_id`` of its save in
its metadata, so a folder mixing two saves (a crash between renames) is detected.
While the renames run, the previous complete save stays hard-linked in
``.previous/``; :func:`load_checkpoint` falls back to it when the folder mixes two
saves, so a crash at any instant leaves a loadable, complete checkpoint.

Loading never unpickles: files are sniffed first, and a pickle (``.bin``, ``.pt``,
``.ckpt``, a torch zip archive) is refused with :class:`PickleRefusedError`, whatever
its name. Truncated files and weights that do not fit the architecture raise
:class:`CheckpointError` with the reason.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# The low-level pieces live in their own modules (adapters reads safetensors without
# importing this one); their public names stay importable from here.
from curate.models._errors import CheckpointError, PickleRefusedError
from curate.models._safetensors_io import PICKLE_SUFFIXES, check_safetensors, read_safetensors, refuse_pickle, sniff
from curate.models._state_dicts import decode, encode, load_state, plain_state, unwrap
from curate.models._transaction import PREVIOUS, replace_files

__all__ = [
    "FORMAT", "FORMAT_VERSION", "CONFIG", "PREVIOUS", "WEIGHTS", "EMA", "OPT_TENSORS", "OPT_JSON", "PICKLE_SUFFIXES",
    "CheckpointError", "PickleRefusedError", "Checkpoint",
    "sniff", "refuse_pickle", "check_safetensors", "read_safetensors", "load_state",
    "save_checkpoint", "load_checkpoint", "is_curate_checkpoint", "load_model", "pickle_to_safetensors",
]

FORMAT = "curate.unet"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EMA = "ema.safetensors"
OPT_TENSORS = "optimizer.safetensors"
OPT_JSON = "optimizer.json"


# --------------------------------------------------------------------------- writing

def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, *, ema: torch.nn.Module | dict | None = None,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    train_config: dict | None = None) -> Path:
    """Save a curate checkpoint folder (see the module docstring); returns the folder.

    ``model`` must be a :class:`curate.models.unet.UNet` (or wrap one, as DDP does).
    Existing files of an older save are replaced atomically, one by one, config last.
    """
    net = unwrap(model)
    if not hasattr(net, "config"):
        raise TypeError("save_checkpoint needs a curate UNet (an nn.Module with a .config dict)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {"format": "pt", "curate_format": FORMAT, "save_id": save_id, "step": str(int(step))}
    files: dict[str, Any] = {WEIGHTS: (plain_state(net), meta)}
    if ema is not None:
        files[EMA] = (plain_state(ema), meta)
    if optimizer is not None:
        opt_tensors: dict[str, torch.Tensor] = {}
        structure = encode(optimizer.state_dict(), opt_tensors, "opt")
        files[OPT_TENSORS] = (opt_tensors, meta)
        files[OPT_JSON] = json.dumps({"save_id": save_id, "state_dict": structure}).encode()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": type(net).__name__,
        "model": net.config,
        "step": int(step),
        "save_id": save_id,
        "files": sorted(files),
        "train": train_config or {},
    }
    files[CONFIG] = json.dumps(config, indent=2).encode()
    replace_files(folder, files, previous=_consistent(folder))
    return folder


def _consistent(folder: Path) -> list[str] | None:
    """The files of the folder's save when they all belong to it (same save_id), else None."""
    try:
        config = _read_config(folder)
        save_id = config.get("save_id")
        names = list(config.get("files", [WEIGHTS]))
        for name in names:
            path = folder / name
            if name.endswith(".safetensors"):
                found = check_safetensors(path).get("__metadata__", {}).get("save_id")
            else:
                found = json.loads(path.read_text()).get("save_id")
            if found != save_id:
                return None
        return names + [CONFIG]
    except (CheckpointError, OSError, ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------- reading

@dataclass
class Checkpoint:
    """A loaded curate checkpoint. States are plain dicts of CPU (or ``device``) tensors."""

    folder: Path
    config: dict
    step: int
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict | None = None
    train_config: dict = field(default_factory=dict)

    def build_model(self, *, weights: str = "ema", device=None) -> torch.nn.Module:
        """The U-Net with the ``ema`` (default, falls back to ``model``) or ``model`` weights, in eval mode."""
        from curate.models.unet import UNet

        if weights not in ("ema", "model"):
            raise ValueError("weights must be 'ema' or 'model'")
        try:
            net = UNet(**self.config["model"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{self.folder / CONFIG}: invalid model config: {e}") from None
        state = self.ema_state if weights == "ema" and self.ema_state is not None else self.model_state
        load_state(net, state, source=str(self.folder))
        return net.to(device).eval() if device is not None else net.eval()


def is_curate_checkpoint(folder: str | os.PathLike) -> bool:
    cfg = Path(folder) / CONFIG
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder} holds no {CONFIG}: not a curate checkpoint")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON (truncated?): {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a curate checkpoint config (format != {FORMAT!r})")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {config['format_version']}; this curate reads "
                              f"up to {FORMAT_VERSION}: upgrade curate")
    return config


def load_checkpoint(folder: str | os.PathLike, *, device=None, optimizer: bool = True) -> Checkpoint:
    """Read a curate checkpoint folder written by :func:`save_checkpoint` (no code runs).

    When the folder's files do not form one complete save (a save was interrupted
    between its renames) and the previous complete save is kept in ``.previous/``,
    that one is returned, with a warning.

    Raises CheckpointError (missing/truncated/inconsistent files), PickleRefusedError.
    """
    folder = Path(folder)
    try:
        return _load_checkpoint(folder, device=device, optimizer=optimizer)
    except PickleRefusedError:
        raise
    except CheckpointError as e:
        prev = folder / PREVIOUS
        if not prev.is_dir():
            raise
        try:
            state = _load_checkpoint(prev, device=device, optimizer=optimizer)
        except CheckpointError:
            raise e from None
        import warnings

        warnings.warn(f"{e}; using the previous complete save (step {state.step}) kept in {prev}",
                      stacklevel=2)
        return state


def _load_checkpoint(folder: Path, *, device=None, optimizer: bool = True) -> Checkpoint:
    folder = Path(folder)
    if not folder.is_dir():
        if folder.is_file():
            refuse_pickle(folder)
        raise CheckpointError(f"{folder} is not a checkpoint folder")
    config = _read_config(folder)
    save_id = config.get("save_id")

    def tensors(name):
        state, meta = read_safetensors(folder / name, device)
        if meta.get("save_id") != save_id:
            raise CheckpointError(
                f"{folder / name} belongs to a different save than {CONFIG} (save_id {meta.get('save_id')} "
                f"!= {save_id}): the folder mixes two checkpoints (an interrupted save?)"
            )
        return state

    listed = set(config.get("files", [WEIGHTS]))
    model_state = tensors(WEIGHTS)
    ema_state = tensors(EMA) if EMA in listed else None
    opt_state = None
    if optimizer and OPT_TENSORS in listed:
        opt_tensors = tensors(OPT_TENSORS)
        path = folder / OPT_JSON
        try:
            opt_json = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"missing checkpoint file {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not valid JSON (truncated?): {e}") from None
        if opt_json.get("save_id") != save_id:
            raise CheckpointError(f"{path} belongs to a different save than {CONFIG} (interrupted save?)")
        opt_state = decode(opt_json["state_dict"], opt_tensors)
    return Checkpoint(folder=folder, config=config, step=int(config.get("step", 0)), model_state=model_state,
                      ema_state=ema_state, optimizer_state=opt_state, train_config=config.get("train", {}))


# --------------------------------------------------------------------------- any model folder

def load_model(path: str | os.PathLike, device=None, *, weights: str = "ema", dtype: torch.dtype | None = None):
    """A score model (an object with ``eps(x, t)``) from a folder, ready for track_volume_growth.

    Recognised folders:

    * a curate checkpoint (``config.json`` with ``"format": "curate.unet"``): the U-Net
      with EMA weights (``weights="model"`` for the raw ones);
    * a diffusers ``UNet2DModel`` folder (``config.json`` with ``_class_name``
      UNet2DModel and ``diffusion_pytorch_model.safetensors``, optionally a
      ``scheduler_config.json`` beside it or in ``../scheduler``), or a DDPM pipeline
      folder holding ``unet/`` and ``scheduler/``: a :class:`DiffusersUNetAdapter`
      (needs the ``diffusers`` extra).

    The model is returned in eval mode on ``device`` (default: CUDA when available).
    """
    path = Path(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if path.is_file():
        refuse_pickle(path)
        if path.name == CONFIG or sniff(path) == "safetensors":
            path = path.parent
        else:
            raise CheckpointError(f"{path} is a file; pass the checkpoint folder that holds it")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if is_curate_checkpoint(path):
        model = load_checkpoint(path, optimizer=False).build_model(weights=weights, device=device)
        return model.to(dtype) if dtype is not None else model
    from curate.models.adapters import DiffusersUNetAdapter, find_diffusers_unet

    if find_diffusers_unet(path) is not None:
        return DiffusersUNetAdapter.from_folder(path, device=device, dtype=dtype)
    pickles = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    hint = (f" It holds pickle files ({', '.join(pickles)}), which curate never loads; convert them to "
            "safetensors first (curate.models.checkpoint.pickle_to_safetensors).") if pickles else ""
    raise CheckpointError(
        f"{path} is neither a curate checkpoint (config.json with format {FORMAT!r}) nor a diffusers "
        f"UNet2DModel folder.{hint}"
    )


def pickle_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert a *trusted* PyTorch weights pickle to safetensors, with ``torch.load(weights_only=True)``.

    weights_only restricts the unpickler to tensors and plain containers, so a pickle that
    would construct arbitrary objects fails instead of running. Only a flat
    ``{name: tensor}`` state dict (or one under a ``state_dict`` key) is accepted.
    """
    from safetensors.torch import save_file

    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:
        raise PickleRefusedError(f"{src}: torch.load(weights_only=True) refused it: {e}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{src} is not a flat state dict of tensors")
    dst = Path(dst)
    save_file({k: v.contiguous() for k, v in obj.items()}, str(dst))
    return dst
