"""State dicts to and from what a checkpoint stores: plain contiguous tensors for a
module's weights, and an optimizer's nested state as JSON with its tensors by name."""
from __future__ import annotations

import torch

from curate.models._errors import CheckpointError


def unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel


def plain_state(module: torch.nn.Module | dict) -> dict[str, torch.Tensor]:
    state = module if isinstance(module, dict) else unwrap(module).state_dict()
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


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


def encode(obj, tensors: dict, prefix: str):
    """JSON-able structure with tensors moved into ``tensors`` under dotted names."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, encode(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def decode(obj, tensors: dict):
    """The structure :func:`encode` stored, with its tensors put back from ``tensors``."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                raise CheckpointError(f"optimizer tensor {obj['__tensor__']} is missing") from None
        if "__dict__" in obj:
            return {k: decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(decode(v, tensors) for v in obj["__tuple__"])
        raise CheckpointError(f"unexpected object in optimizer.json: {sorted(obj)}")
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    return obj
