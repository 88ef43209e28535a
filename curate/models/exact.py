"""The exact score of a finite training set: the perfectly memorizing model.

p_t(x) = (1/n) sum_i N(x; alpha y_i, v I)
w_i(x) = softmax_i(-|x - alpha y_i|^2 / (2 v)),  ybar = sum_i w_i y_i
s(x, t) = (alpha ybar - x) / v
nabla . s = -D / v + (alpha^2 / v^2) sum_i w_i |y_i - ybar|^2
"""
from __future__ import annotations

import torch

from curate import sde as _sde


class ExactScore:
    """Closed-form score of ``train_images`` (n, C, H, W) in [-1, 1].

    The softmax over training images is a streamed log-sum-exp over chunks of the
    training set, each chunk sized so that a (B, chunk) block stays within
    ``memory_mb``; n = 50,000 images of D = 3,072 never form an (B, n, D) tensor.
    Computations run in the dtype of ``x`` on the device of the stored images
    (see :meth:`to`).
    """

    def __init__(self, train_images: torch.Tensor, *, memory_mb: float = 256.0, sde: _sde.VPSDE = _sde.VP):
        if not isinstance(train_images, torch.Tensor) or train_images.dim() != 4:
            raise ValueError(
                "ExactScore needs train_images as a tensor of shape (n, C, H, W), got "
                f"{getattr(train_images, 'shape', type(train_images))}"
            )
        if train_images.shape[0] == 0:
            raise ValueError("ExactScore needs at least one training image")
        if not torch.isfinite(train_images).all():
            raise ValueError("ExactScore: train_images contain NaN or Inf")
        self.image_shape = tuple(train_images.shape[1:])
        self.y = train_images.reshape(train_images.shape[0], -1).detach()
        self.memory_mb = float(memory_mb)
        self.sde = sde

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def dim(self) -> int:
        return self.y.shape[1]

    def to(self, device=None, dtype=None) -> "ExactScore":
        """Move the stored training set (returns self)."""
        self.y = self.y.to(device=device, dtype=dtype)
        return self

    def _chunk(self, rows: int, per_row: int, itemsize: int) -> int:
        budget = self.memory_mb * 2**20 / itemsize
        return max(1, min(self.n, int(budget // max(1, rows * per_row))))

    def _logits(self, x, yc, a, var):
        """-|x - a y_i|^2 / (2 var) up to a per-row constant, as a matmul: (B, chunk)."""
        return (a * (x @ yc.T) - 0.5 * a * a * (yc * yc).sum(1)) / var

    def _posterior_mean(self, x: torch.Tensor, a: torch.Tensor, var: torch.Tensor):
        """Streamed softmax over the training set.

        Returns ybar (B, D), the running max logit and normaliser (B, 1) each, and the
        index of the most likely training image (B,). The row constant |x|^2 of the
        logits is dropped because the softmax does not see it.
        """
        B = x.shape[0]
        y = self.y.to(x.dtype)
        chunk = self._chunk(B, 3, x.element_size())
        run_max = torch.full((B, 1), -torch.inf, dtype=x.dtype, device=x.device)
        run_arg = torch.zeros((B,), dtype=torch.long, device=x.device)
        run_sum = torch.zeros((B, 1), dtype=x.dtype, device=x.device)
        run_y = torch.zeros_like(x)
        for start in range(0, self.n, chunk):
            yc = y[start:start + chunk]
            logits = self._logits(x, yc, a, var)
            cmax, carg = logits.max(1, keepdim=True)
            new_max = torch.maximum(run_max, cmax)
            run_arg = torch.where(cmax.squeeze(1) > run_max.squeeze(1), carg.squeeze(1) + start, run_arg)
            scale = torch.exp(run_max - new_max)
            p = torch.exp(logits - new_max)
            run_sum = run_sum * scale + p.sum(1, keepdim=True)
            run_y = run_y * scale + p @ yc
            run_max = new_max
        return run_y / run_sum, run_max, run_sum, run_arg

    def _prepare(self, x: torch.Tensor, t: torch.Tensor):
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"ExactScore was built for images {self.image_shape}, got {tuple(x.shape[1:])}")
        flat = x.reshape(x.shape[0], -1)
        if flat.device != self.y.device:
            raise ValueError(f"x is on {flat.device} but the training set is on {self.y.device}; call .to()")
        a = self.sde.alpha(t).to(flat.dtype).reshape(-1, 1)
        var = self.sde.v(t).to(flat.dtype).reshape(-1, 1)
        return flat, a, var

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps = -sigma_t s = (x - alpha ybar) / sigma_t;  x: (B, C, H, W), t: (B,)."""
        flat, a, var = self._prepare(x, t)
        ybar = self._posterior_mean(flat, a, var)[0]
        return ((flat - a * ybar) / torch.sqrt(var)).reshape(x.shape)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s = (alpha ybar - x) / v;  x: (B, C, H, W), t: (B,)."""
        flat, a, var = self._prepare(x, t)
        ybar = self._posterior_mean(flat, a, var)[0]
        return ((a * ybar - flat) / var).reshape(x.shape)

    def divergence(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact nabla . s (B,): -D/v + (alpha^2/v^2) sum_i w_i |y_i - ybar|^2.

        The weighted spread is taken about the most likely training image c,
        sum_i w_i |y_i - c|^2 - |ybar - c|^2, not as E|y|^2 - |ybar|^2: when one image
        dominates (small t, where alpha^2/v^2 is ~1e8) both terms are then near zero
        and nothing cancels. A second streamed pass, matmuls only.
        """
        flat, a, var = self._prepare(x, t)
        ybar, run_max, run_sum, arg = self._posterior_mean(flat, a, var)
        y = self.y.to(flat.dtype)
        c = y[arg]  # (B, D)
        B, D = flat.shape
        chunk = self._chunk(B, 3, flat.element_size())
        spread = torch.zeros((B,), dtype=flat.dtype, device=flat.device)
        cc = (c * c).sum(1, keepdim=True)
        for start in range(0, self.n, chunk):
            yc = y[start:start + chunk]
            w = torch.exp(self._logits(flat, yc, a, var) - run_max) / run_sum  # (B, chunk)
            d2 = ((yc * yc).sum(1) - 2 * (c @ yc.T) + cc).clamp_min(0)  # |y_i - c|^2
            spread += (w * d2).sum(1)
        spread = (spread - ((ybar - c) ** 2).sum(1)).clamp_min(0)
        a1, v1 = a.squeeze(1), var.squeeze(1)
        return -D / v1 + (a1 * a1) / (v1 * v1) * spread

    def __repr__(self) -> str:
        return f"ExactScore(n={self.n}, image_shape={self.image_shape})"
