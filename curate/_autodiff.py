"""Forward-mode derivatives that work through attention layers.

PyTorch's fused attention kernels (CPU flash attention, CUDA flash and memory-efficient)
have no forward-mode derivative, so ``torch.func.jvp`` through
``F.scaled_dot_product_attention`` raises NotImplementedError on float32/bf16 inputs, in
any grad mode. Inside :func:`jvp` only the math kernel (plain matmuls and softmax, which
have forward derivatives) may be chosen: curate's U-Net and diffusers' ``UNet2DModel``
both attend through that one function. Every JVP in curate goes through here.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

_loaded = False


def _load_forward_ad() -> None:
    """torch loads its forward-mode decompositions on the first jvp through torch.jit.script,
    which warns on every new process; load them once here, quietly (torch's warning, not ours)."""
    global _loaded
    if _loaded:
        return
    from torch.autograd import forward_ad

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        load = getattr(forward_ad, "_maybe_load_decompositions", None)  # private; absent in some versions
        if load is not None:
            load()
    _loaded = True


def jvp(fn: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor,
        tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn(primal), J_fn(primal) @ tangent) in one forward pass, attention included.

    primal, tangent: tensors of the same shape (rows of a batch); fn maps rows to rows.
    """
    _load_forward_ad()
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.func.jvp(fn, (primal,), (tangent,))
