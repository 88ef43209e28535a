"""Run a score network faster: channels-last memory and ``torch.compile``.

``fast_model(model, channels_last=True, compile=True)`` returns a score model whose
``eps(x, t)`` gives the wrapped model's values (to float rounding) from faster
kernels. Use it with ``method="fd"`` (forward passes only); the tangent mode and
exact divergences differentiate through the network, which compiled graphs may not
support.

On a GPU, channels-last lets cuDNN pick NHWC convolution kernels (tensor cores under
bf16/TF32); ``torch.compile`` fuses the GroupNorm/SiLU/add chains of the U-Net.
``curate bench tracker --channels-last --compile`` measures both.
"""
from __future__ import annotations

import torch

from curate.models.base import check_model


class FastModel:
    """``model`` run channels-last and/or compiled; everything else is the model's own.

    Attributes:
        model: the wrapped score model (converted to channels-last in place).
        config: the wrapped model's ``config`` (image shape for the FiftyOne checks).
    """

    def __init__(self, model, *, channels_last: bool = False, compile: bool | str = False,
                 mode: str | None = None):
        check_model(model)
        self.model = model
        self.config = getattr(model, "config", None)
        self.channels_last = bool(channels_last)
        self.compiled = bool(compile)
        if self.channels_last:
            if not isinstance(model, torch.nn.Module):
                raise TypeError("channels_last needs a torch.nn.Module score network")
            model.to(memory_format=torch.channels_last)
        self._eps = model.eps
        if compile:
            # dynamic=None: compile for the first batch shape, then once more with a
            # symbolic batch size when a chunk of another size arrives (the last one).
            backend = compile if isinstance(compile, str) else "inductor"
            self._eps = torch.compile(model.eps, backend=backend, mode=mode, dynamic=None)

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,) -> eps (B, C, H, W), contiguous."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._eps(x, t).contiguous()

    def parameters(self):
        params = getattr(self.model, "parameters", None)
        return params() if callable(params) else iter(())

    def __repr__(self) -> str:
        how = [w for w, on in (("channels-last", self.channels_last), ("compiled", self.compiled)) if on]
        return f"FastModel({', '.join(how) or 'plain'}, {self.model!r})"


def fast_model(model, *, channels_last: bool = False, compile: bool | str = False, mode: str | None = None,
               tf32: bool | None = None):
    """``model`` made faster (see the module docstring); the model itself when nothing is asked.

    Args:
        model: a score model; a ``torch.nn.Module`` for ``channels_last``.
        channels_last: keep activations in NHWC memory order.
        compile: ``True`` for ``torch.compile`` with inductor, or a backend name.
        mode: ``torch.compile`` mode (e.g. ``"max-autotune"``).
        tf32: set ``torch.backends.cuda.matmul.allow_tf32`` and cuDNN's (process-wide;
            None leaves them alone). Float32 matmuls then round inputs to 10-bit
            mantissas; ``curate bench`` reports the change in log growth.
    """
    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
        torch.backends.cudnn.allow_tf32 = bool(tf32)
    if not channels_last and not compile:
        return model
    return FastModel(model, channels_last=channels_last, compile=compile, mode=mode)
