"""Adapters that turn other people's noise-prediction networks into curate score models.

* :class:`EpsNetAdapter` -- any network called as ``net(x, time_scale * t)`` that predicts
  the noise of the VP-SDE (the paper's code and score_sde's continuous VP models use
  ``time_scale = 999``).
* :class:`DiffusersUNetAdapter` -- a diffusers ``UNet2DModel`` trained as a discrete DDPM
  (e.g. a local copy of google/ddpm-cifar10-32: linear betas 1e-4..0.02, 1000 steps).

The discrete <-> continuous time map (docs/design.md, section 1). Step i of a DDPM has
alphabar_i = prod_{j<=i} (1 - beta_j); the VP-SDE at time t has alpha(t)^2 = exp(-2 m(t)).
A continuous time t is sent to the *fractional* step i(t) with

    -log alphabar(i(t)) = 2 m(t),

where -log alphabar is interpolated linearly between integer steps. At integer steps this
is exact (the network sees exactly the noise level it was trained on), it is continuous
and monotone in t (finite differences and JVPs along t see no jumps), and the noise level
the network is asked about is sigma_t = sqrt(1 - exp(-2 m(t))), which is exactly the
sigma the score formula s = -eps / sigma_t divides by. For the linear 1e-4..0.02 schedule
the map is close to i = 1000 t - 1, and [t_min, 1] falls inside steps [0, 999].
Diffusers' timestep embedding is a smooth function of a float timestep, so fractional
steps are meaningful inputs; ``time_map="nearest"`` rounds to the trained integer steps
instead (piecewise constant in t).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from curate import sde as _sde


def _output_tensor(out):
    """diffusers returns an output object with ``.sample``; plain networks a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the wrapped network returned {type(out).__name__}, not a tensor of noise predictions")


class EpsNetAdapter(nn.Module):
    """Score model around a noise-prediction network called as ``net(x, time_scale * t)``.

    x: (B, C, H, W) in [-1, 1] at t = 0, t: (B,) in [t_min, 1]; ``eps`` returns (B, C, H, W).
    """

    def __init__(self, net: nn.Module, time_scale: float | None = None, *, sde: _sde.VPSDE = _sde.VP):
        super().__init__()
        if not callable(net):
            raise TypeError("EpsNetAdapter needs a callable network net(x, timesteps)")
        self.net = net
        self.sde = sde
        self.time_scale = float(sde.time_scale if time_scale is None else time_scale)

    @property
    def dtype(self) -> torch.dtype | None:
        for p in self.net.parameters() if isinstance(self.net, nn.Module) else ():
            return p.dtype
        return None

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = _output_tensor(self.net(x, self.time_scale * t))
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}; "
                             "it must predict noise shaped like its input")
        return out

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps(x, t)


def ddpm_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               beta_schedule: str = "linear") -> torch.Tensor:
    """The per-step betas (float64, shape (N,)) of a diffusers DDPM scheduler config."""
    n = int(num_train_timesteps)
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        def abar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                            dtype=torch.float64)
    raise ValueError(f"unsupported beta_schedule {beta_schedule!r} (linear, scaled_linear, squaredcos_cap_v2)")


class DiscreteTimeMap:
    """Continuous VP-SDE time t <-> fractional DDPM step, through -log alphabar (float64).

    ``neg_log_alphabar[i] = -sum_{j<=i} log(1 - beta_j)``, increasing in i.
    """

    def __init__(self, betas: torch.Tensor, sde: _sde.VPSDE = _sde.VP):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() < 2 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor of at least 2 values in (0, 1)")
        self.betas = betas
        self.sde = sde
        self.neg_log_alphabar = -torch.cumsum(torch.log1p(-betas), 0)

    @property
    def num_steps(self) -> int:
        return self.betas.numel()

    def step(self, t: torch.Tensor) -> torch.Tensor:
        """Fractional step i(t) (float64, t's shape): -log alphabar(i) = 2 m(t), clamped to [0, N-1]."""
        L = self.neg_log_alphabar.to(t.device)
        target = 2.0 * self.sde.m(t.to(torch.float64))
        j = torch.searchsorted(L, target).clamp(1, L.numel() - 1)
        lo, hi = L[j - 1], L[j]
        i = (j - 1).to(torch.float64) + (target - lo) / (hi - lo)
        return i.clamp(0.0, float(L.numel() - 1))

    def time(self, i: torch.Tensor) -> torch.Tensor:
        """Continuous t of integer (or fractional) steps i: the root of 2 m(t) = -log alphabar(i)."""
        i = torch.as_tensor(i, dtype=torch.float64)
        L = self.neg_log_alphabar.to(i.device)
        k = i.floor().long().clamp(0, L.numel() - 2)
        target = L[k] + (i - k) * (L[k + 1] - L[k])
        return self.sde.m_inverse(target / 2)


def find_diffusers_unet(path: str | os.PathLike):
    """(unet folder, scheduler_config.json or None) when ``path`` holds a diffusers UNet2DModel, else None.

    Accepts the UNet folder itself or a pipeline folder with ``unet/`` (and ``scheduler/``).
    """
    path = Path(path)

    def is_unet(folder: Path) -> bool:
        cfg = folder / "config.json"
        if not cfg.is_file():
            return False
        try:
            return json.loads(cfg.read_text()).get("_class_name") == "UNet2DModel"
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False

    for unet_dir in (path, path / "unet"):
        if is_unet(unet_dir):
            for sched in (unet_dir / "scheduler_config.json", unet_dir.parent / "scheduler" / "scheduler_config.json",
                          path / "scheduler" / "scheduler_config.json"):
                if sched.is_file():
                    return unet_dir, sched
            return unet_dir, None
    return None


class DiffusersUNetAdapter(nn.Module):
    """Score model around a diffusers ``UNet2DModel`` DDPM noise predictor.

    ``eps(x, t)`` calls ``unet(x, i(t)).sample`` with the fractional step i(t) of
    :class:`DiscreteTimeMap`; x: (B, C, H, W) in [-1, 1], t: (B,) in [t_min, 1].
    Only epsilon-prediction models are accepted.
    """

    def __init__(self, unet: nn.Module, *, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 prediction_type: str = "epsilon", time_map: str = "interpolate"):
        super().__init__()
        if prediction_type != "epsilon":
            raise ValueError(f"DiffusersUNetAdapter supports prediction_type 'epsilon' only, got {prediction_type!r}")
        if time_map not in ("interpolate", "nearest"):
            raise ValueError("time_map must be 'interpolate' or 'nearest'")
        self.unet = unet
        betas = (torch.as_tensor(trained_betas, dtype=torch.float64) if trained_betas is not None
                 else ddpm_betas(num_train_timesteps, beta_start, beta_end, beta_schedule))
        # kept outside the module's buffers so .to(float32) never degrades it
        self.time_map = DiscreteTimeMap(betas)
        self.time_map_mode = time_map

    @property
    def sde(self) -> _sde.VPSDE:
        """The continuous VP-SDE the discrete steps are mapped onto."""
        return self.time_map.sde

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        """The DDPM step (float64, shape (B,)) the network is evaluated at for continuous times t."""
        i = self.time_map.step(t)
        return i.round() if self.time_map_mode == "nearest" else i

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        steps = self.timestep(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)
        return _output_tensor(self.unet(x, steps.to(torch.float32)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps(x, t)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, *, device=None, dtype: torch.dtype | None = None,
                    time_map: str = "interpolate") -> "DiffusersUNetAdapter":
        """Load a local UNet2DModel folder (safetensors weights only) and its DDPM scheduler config.

        Without a ``scheduler_config.json`` the DDPM CIFAR-10 schedule (linear 1e-4..0.02,
        1000 steps) is assumed.
        """
        from curate.models._errors import CheckpointError, PickleRefusedError
        from curate.models._safetensors_io import check_safetensors

        try:
            from diffusers import UNet2DModel
        except ImportError:
            raise ImportError("loading a diffusers UNet2DModel needs the optional extra: "
                              "pip install 'curate[diffusers]'") from None
        found = find_diffusers_unet(path)
        if found is None:
            raise CheckpointError(f"{path} holds no diffusers UNet2DModel (config.json with _class_name UNet2DModel)")
        unet_dir, sched_path = found
        weights = unet_dir / "diffusion_pytorch_model.safetensors"
        if not weights.is_file():
            pickles = [p.name for p in unet_dir.glob("diffusion_pytorch_model*.bin")]
            if pickles:
                raise PickleRefusedError(
                    f"{unet_dir} only has pickle weights ({', '.join(pickles)}); curate never unpickles. If you "
                    "trust them, convert once with curate.models.checkpoint.pickle_to_safetensors("
                    f"'{unet_dir / pickles[0]}', '{weights}')"
                )
            raise CheckpointError(f"{unet_dir} has no diffusion_pytorch_model.safetensors")
        check_safetensors(weights)  # truncation / pickle in disguise, with a clear message
        # Without accelerate, diffusers would fall back to low_cpu_mem_usage=False anyway, after a
        # warning on every load that a user cannot act on: ask for that mode directly.
        import importlib.util

        low_mem = importlib.util.find_spec("accelerate") is not None
        unet = UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=True, local_files_only=True,
                                           low_cpu_mem_usage=low_mem)
        sched = {}
        if sched_path is not None:
            sched = json.loads(Path(sched_path).read_text())
        kwargs = dict(
            num_train_timesteps=sched.get("num_train_timesteps", 1000),
            beta_start=sched.get("beta_start", 1e-4),
            beta_end=sched.get("beta_end", 0.02),
            beta_schedule=sched.get("beta_schedule", "linear"),
            trained_betas=sched.get("trained_betas"),
            prediction_type=sched.get("prediction_type", "epsilon"),
        )
        model = cls(unet, time_map=time_map, **kwargs).eval()
        if device is not None:
            model = model.to(device)
        if dtype is not None:
            model = model.to(dtype)
        return model
