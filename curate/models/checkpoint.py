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
import shutil
import struct
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = "curate.unet"
FORMAT_VERSION = 1
CONFIG = "config.json"
PREVIOUS = ".previous"  # the last complete save, kept while a new one is renamed in
WEIGHTS = "model.safetensors"
EMA = "ema.safetensors"
OPT_TENSORS = "optimizer.safetensors"
OPT_JSON = "optimizer.json"

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, truncated, inconsistent or mismatched."""


class PickleRefusedError(CheckpointError):
    """The file is a Python pickle; loading it could execute arbitrary code, so curate refuses."""


# --------------------------------------------------------------------------- sniffing

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


def _check_safetensors(path: Path) -> dict:
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
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device or "cpu")) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path} could not be read as safetensors: {e}") from None
    return tensors, meta


# --------------------------------------------------------------------------- writing

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
        for name, tmp in tmp_names.items():  # config.json is last in ``files``
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


def _plain_state(module: torch.nn.Module | dict) -> dict[str, torch.Tensor]:
    state = module if isinstance(module, dict) else _unwrap(module).state_dict()
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def _unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel


def _encode(obj, tensors: dict, prefix: str):
    """JSON-able structure with tensors moved into ``tensors`` under dotted names."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _decode(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                raise CheckpointError(f"optimizer tensor {obj['__tensor__']} is missing") from None
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        raise CheckpointError(f"unexpected object in optimizer.json: {sorted(obj)}")
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, *, ema: torch.nn.Module | dict | None = None,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    train_config: dict | None = None) -> Path:
    """Save a curate checkpoint folder (see the module docstring); returns the folder.

    ``model`` must be a :class:`curate.models.unet.UNet` (or wrap one, as DDP does).
    Existing files of an older save are replaced atomically, one by one, config last.
    """
    net = _unwrap(model)
    if not hasattr(net, "config"):
        raise TypeError("save_checkpoint needs a curate UNet (an nn.Module with a .config dict)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {"format": "pt", "curate_format": FORMAT, "save_id": save_id, "step": str(int(step))}
    files: dict[str, Any] = {WEIGHTS: (_plain_state(net), meta)}
    if ema is not None:
        files[EMA] = (_plain_state(ema), meta)
    if optimizer is not None:
        opt_tensors: dict[str, torch.Tensor] = {}
        structure = _encode(optimizer.state_dict(), opt_tensors, "opt")
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
    _keep_previous(folder)
    _atomic_files(folder, files)
    shutil.rmtree(folder / PREVIOUS, ignore_errors=True)  # the new save is complete
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
                found = _check_safetensors(path).get("__metadata__", {}).get("save_id")
            else:
                found = json.loads(path.read_text()).get("save_id")
            if found != save_id:
                return None
        return names + [CONFIG]
    except (CheckpointError, OSError, ValueError, AttributeError):
        return None


def _keep_previous(folder: Path) -> None:
    """Hard-link the folder's current complete save into ``.previous/`` (the fallback
    while the new files are renamed in). A folder that already mixes two saves keeps
    the fallback it has."""
    names = _consistent(folder)
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
        opt_state = _decode(opt_json["state_dict"], opt_tensors)
    return Checkpoint(folder=folder, config=config, step=int(config.get("step", 0)), model_state=model_state,
                      ema_state=ema_state, optimizer_state=opt_state, train_config=config.get("train", {}))


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """``module.load_state_dict(state)`` with one clear error naming every mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def few(xs):
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing [{few(missing)}]")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected [{few(unexpected)}]")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes [{few(shapes)}]")
        raise CheckpointError(f"the weights in {source} do not fit the architecture: " + "; ".join(parts))
    module.load_state_dict(state)


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
