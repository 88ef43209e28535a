"""The paper's noise-prediction U-Net (the DDPM / score_sde "DDPM" network), with size presets.

Architecture (Ho et al. 2020; Song et al. 2021's continuous VP models; the paper's code):

* time: sinusoidal embedding of ``sde.network_time(t)`` (999 t) (``ch`` features) -> Linear(ch, 4ch) -> SiLU
  -> Linear(4ch, 4ch), added into every residual block;
* a 3x3 input conv, then one level per entry of ``ch_mult`` with ``num_res_blocks``
  residual blocks (GroupNorm, SiLU, conv, + time, GroupNorm, SiLU, dropout, conv) and
  self-attention where the feature map's side is in ``attn_resolutions``; a strided-conv
  downsample between levels;
* a middle of residual block, attention, residual block;
* the mirror-image upsampling path with ``num_res_blocks + 1`` blocks per level over
  concatenated skips, nearest-neighbour upsampling + conv;
* GroupNorm, SiLU, and a zero-initialised 3x3 output conv (the network starts at eps = 0).

Presets (``PRESETS``):

* ``paper``: ch 128, ch_mult (1, 2, 2, 2), 2 res blocks, attention at 16x16 and in the
  middle, GroupNorm 32, dropout 0.1 -- 35.7 M parameters at 32x32x3.
* ``small``: ch 64, ch_mult (1, 2, 2), 1 res block, attention at 16x16 and in the middle,
  dropout 0.1; for CPU benchmarks at 32x32.
* ``tiny``: ch 32, ch_mult (1, 2), 1 res block, attention only in the middle, no dropout;
  fast enough to memorise 8x8 digits on a laptop CPU in minutes.

An image side must be divisible by 2 ** (len(ch_mult) - 1) (8 for ``paper``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from curate import sde as _sde

PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                  dropout=0.1, groups=32),
    "small": dict(ch=64, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
                  dropout=0.1, groups=32),
    "tiny": dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                 dropout=0.0, groups=8),
}

def _groups(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels`` (32 for the paper)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [sin(t w_k), cos(t w_k)], w_k = max_period^(-k/(dim/2-1))."""
    half = dim // 2
    k = torch.arange(half, device=timesteps.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half - 1, 1))
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + projected time embedding, GroupNorm-SiLU-dropout-conv, + skip."""

    def __init__(self, c_in: int, c_out: int, temb: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H x W positions, with a residual connection."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c, groups), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Noise-prediction U-Net: ``forward(x, timesteps)`` with timesteps = ``sde.network_time(t)``
    (999 t for the paper's SDE); ``eps(x, t)``.

    x: (B, channels, image_size, image_size); t, timesteps: (B,). ``config`` holds every
    constructor argument (JSON-serialisable), so ``UNet(**model.config)`` rebuilds it.
    """

    def __init__(self, *, image_size: int = 32, channels: int = 3, ch: int = 128,
                 ch_mult=(1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions=(16,),
                 dropout: float = 0.1, groups: int = 32, sde: _sde.VPSDE | dict | None = None):
        super().__init__()
        # The SDE it is trained for; recorded in ``config`` only when it is not the paper's.
        self.sde = sde if isinstance(sde, _sde.VPSDE) else _sde.VPSDE.from_dict(sde)
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        factor = 2 ** (len(ch_mult) - 1)
        if image_size <= 0 or image_size % factor:
            raise ValueError(
                f"image_size {image_size} must be a positive multiple of {factor} for a U-Net with "
                f"{len(ch_mult)} resolutions (ch_mult={ch_mult})"
            )
        if channels <= 0 or ch <= 0 or num_res_blocks < 1 or not ch_mult:
            raise ValueError("channels, ch and num_res_blocks must be positive and ch_mult non-empty")
        self.config = dict(image_size=int(image_size), channels=int(channels), ch=int(ch),
                           ch_mult=list(ch_mult), num_res_blocks=int(num_res_blocks),
                           attn_resolutions=list(attn_resolutions), dropout=float(dropout),
                           groups=int(groups))
        if self.sde != _sde.VP:
            self.config["sde"] = self.sde.to_dict()
        temb = 4 * ch
        self.ch = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(channels, ch, 3, padding=1)

        # Down path: remember each output's channel count for the skips.
        self.down = nn.ModuleList()
        skips = [ch]
        c, res = ch, image_size
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(c, ch * mult, temb, dropout, groups)])
                c = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(c, groups))
                self.down.append(blocks)
                skips.append(c)
            if level != len(ch_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
                res //= 2

        self.mid = nn.ModuleList([ResBlock(c, c, temb, dropout, groups), AttnBlock(c, groups),
                                  ResBlock(c, c, temb, dropout, groups)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(c + skips.pop(), ch * mult, temb, dropout, groups)])
                c = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(c, groups))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(c, c, 3, padding=1)]))
                res *= 2
        assert not skips
        self.norm_out = nn.GroupNorm(_groups(c, groups), c)
        self.conv_out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for b in blocks:
            h = b(h, temb) if isinstance(b, ResBlock) else b(h)
        return h

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W); timesteps: (B,) on the network's time scale -> eps (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.config["channels"]:
            raise ValueError(f"expected x of shape (B, {self.config['channels']}, H, W), got {tuple(x.shape)}")
        timesteps = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps
        temb = self.time_mlp(timestep_embedding(timesteps, self.ch).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, temb)
            hs.append(h)
        h = self._run(self.mid, h, temb)
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), temb)
            else:
                h = self._run(blocks, h, temb)
        return self.conv_out(F.silu(self.norm_out(h)))

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noise prediction at continuous times t in [t_min, 1]: forward(x, sde.network_time(t));
        x (B, C, H, W), t (B,)."""
        return self(x, self.sde.network_time(t))


def preset_config(preset: str = "small", *, image_size: int = 32, channels: int = 3, **overrides) -> dict:
    """The full constructor config of a preset, with ``overrides`` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown U-Net preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset], image_size=image_size, channels=channels)
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown U-Net options {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(overrides)
    return cfg


def build_unet(preset: str = "small", *, image_size: int = 32, channels: int = 3, **overrides) -> UNet:
    """A freshly initialised :class:`UNet` from a preset (``paper``, ``small``, ``tiny``).

    ``overrides`` replace preset fields, e.g. ``build_unet("paper", ch=256)`` for the
    256-channel variant, ``dropout=0.0``, ``ch_mult=(1, 2)``.
    """
    return UNet(**preset_config(preset, image_size=image_size, channels=channels, **overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
