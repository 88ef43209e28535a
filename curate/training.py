"""Denoising score matching for the eps U-Net on the VP-SDE, with EMA and resumable checkpoints.

Loss: E_{t ~ U[t_min, 1], z ~ N(0, I)} |eps_theta(alpha_t y + sigma_t z, t) - z|^2 (mean over
pixels and batch). Adam with linear learning-rate warm-up, gradient clipping, EMA of the
weights (with the usual warm-up ``min(ema, (1 + step) / (10 + step))`` so short runs
average over their recent steps rather than their random start), random horizontal flips,
bf16 autocast on CUDA.

Determinism: the global batch of step s (indices, flips, times, noise) is drawn from a
generator seeded by (seed, s) alone, and rank r of a ``torchrun`` job trains on slice r of
it. So a run resumed from a checkpoint continues exactly as if it had not stopped, and a
DistributedDataParallel run matches a single-process one up to floating-point
reduction order.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=K -m curate train OUT --data ...``
(NCCL on CUDA, gloo on CPU). Rank 0 writes checkpoints, sample grids and the log.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from curate import _progress, sde
from curate._rng import mix_ints
from curate.models import checkpoint as ckpt
from curate.models.unet import UNet, preset_config
from curate.training_data import (check_training_images, fingerprint, load_images,  # noqa: F401 (public here too)
                                  read_training_images)


# --------------------------------------------------------------------------- distributed

def _dist_setup(device):
    """(rank, world, device, owns_group): joins a torchrun job when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        dev = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        return 0, 1, dev, False
    owns = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    if device is None:
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        else:
            device = "cpu"
    return rank, world, torch.device(device), owns


# --------------------------------------------------------------------------- training

def _batch(images: torch.Tensor, step: int, seed: int, batch_size: int, flip: bool, t_min: float,
           t_power: float = 1.0):
    """The global batch of ``step``: (x0, t, z) on the CPU, from a generator seeded by (seed, step)."""
    g = torch.Generator().manual_seed(mix_ints(seed, step))
    idx = torch.randint(images.shape[0], (batch_size,), generator=g)
    flips = torch.rand(batch_size, generator=g) < 0.5
    t = t_min + (1.0 - t_min) * torch.rand(batch_size, generator=g, dtype=torch.float64) ** t_power
    z = torch.randn((batch_size, *images.shape[1:]), generator=g)
    x0 = images[idx]
    if flip:
        x0 = torch.where(flips[:, None, None, None], x0.flip(-1), x0)
    return x0, t.float(), z


def _trim_log(path: Path, step: int) -> None:
    """Drop the lines of ``log.jsonl`` after ``step``: a run killed after its last
    checkpoint logged steps that the resumed run repeats. Rewritten atomically."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def train(images: torch.Tensor, out_dir: str | os.PathLike, *, preset: str = "tiny", model_config: dict | None = None,
          steps: int = 2000, batch_size: int = 128, lr: float = 2e-4, warmup: int = 100, ema: float = 0.9999,
          ema_warmup: bool = True, flip: bool = True, seed: int = 0, resume: bool = True, progress: bool = True,
          sample_every: int = 0, sample_steps: int = 100, save_every: int = 1000, grad_clip: float = 1.0,
          t_min: float | None = None, t_power: float = 1.0, device=None, amp: bool | str = "auto",
          log_every: int = 50) -> UNet:
    """Train a U-Net on ``images`` (n, C, H, W) float in [-1, 1]; checkpoints go to ``out_dir``.

    ``steps`` is the total number of optimizer steps: with ``resume`` (default) a run
    continues from the checkpoint in ``out_dir`` up to ``steps``; with ``resume=False`` an
    existing checkpoint there is an error (nothing is overwritten). ``batch_size`` is the
    global batch (split over ``torchrun`` ranks). ``model_config`` overrides preset fields
    (see :func:`curate.models.unet.build_unet`). ``sample_every`` > 0 writes an 8x8 grid of
    EMA samples (PF-ODE Euler, ``sample_steps`` steps) to ``out_dir/samples/``.
    ``save_every`` > 0 checkpoints periodically; the end of training always does.
    ``t_power`` p draws t = t_min + (1 - t_min) u^p, u ~ U[0, 1]: p = 1 is the paper's uniform
    t; p > 1 spends more of the batch at small t (the same minimiser, another weighting),
    which is where a short run's errors are largest.

    Returns the EMA model in eval mode, on the training device.
    """
    images = check_training_images(images)
    if steps < 0 or batch_size < 1 or lr <= 0 or not 0 <= ema < 1 or warmup < 0:
        raise ValueError("need steps >= 0, batch_size >= 1, lr > 0, 0 <= ema < 1, warmup >= 0")
    out_dir = Path(out_dir)
    rank, world, device, owns_group = _dist_setup(device)
    try:
        return _train(images, out_dir, rank, world, device, preset=preset, model_config=model_config or {},
                      steps=int(steps), batch_size=int(batch_size), lr=float(lr), warmup=int(warmup),
                      ema=float(ema), ema_warmup=ema_warmup, flip=flip, seed=int(seed), resume=resume,
                      progress=progress, sample_every=int(sample_every), sample_steps=int(sample_steps),
                      save_every=int(save_every), grad_clip=float(grad_clip),
                      t_min=None if t_min is None else float(t_min),
                      t_power=float(t_power), amp=amp,
                      log_every=int(log_every))
    finally:
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(images, out_dir: Path, rank: int, world: int, device: torch.device, *, preset, model_config, steps,
           batch_size, lr, warmup, ema, ema_warmup, flip, seed, resume, progress, sample_every, sample_steps,
           save_every, grad_clip, t_min, t_power, amp, log_every):
    import torch.distributed as dist

    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes ({world})")
    local_bs = batch_size // world
    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    arch = preset_config(preset, image_size=h, channels=c, **model_config)
    if t_min is None:
        t_min = sde.VPSDE.from_dict(arch.get("sde")).t_min
    settings = dict(preset=preset, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, ema=ema,
                    ema_warmup=ema_warmup, flip=flip, seed=seed, grad_clip=grad_clip, t_min=t_min, t_power=t_power,
                    n_images=n, data_sha256=fingerprint(images), world_size=world)

    torch.manual_seed(seed)  # identical initial weights on every rank
    net = UNet(**arch).to(device)
    ema_net = copy.deepcopy(net).requires_grad_(False).eval()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = 0
    if ckpt.is_curate_checkpoint(out_dir):
        if not resume:
            raise FileExistsError(f"{out_dir} already holds a checkpoint; pass resume=True to continue it or "
                                  "choose another folder")
        state = ckpt.load_checkpoint(out_dir)
        if state.config["model"] != UNet(**arch).config:
            raise ValueError(f"the checkpoint in {out_dir} has architecture {state.config['model']}, but this "
                             f"run asks for {UNet(**arch).config}")
        old_sha = state.train_config.get("data_sha256")
        if old_sha is not None and old_sha != settings["data_sha256"]:
            raise ValueError(f"the checkpoint in {out_dir} was trained on different images (sha256 differs); "
                             "resume it with the same data or train into another folder")
        ckpt.load_state(net, state.model_state, source=str(out_dir))
        ckpt.load_state(ema_net, state.ema_state if state.ema_state is not None else state.model_state,
                        source=str(out_dir))
        if state.optimizer_state is not None:
            opt.load_state_dict(state.optimizer_state)
        start = state.step
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = device.type == "cuda" and amp in (True, "auto", "bf16")
    images_dev = images  # batches are built on the CPU from (seed, step), then moved

    params = [p for p in net.parameters()]
    ema_params = [p for p in ema_net.parameters()]
    main = rank == 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    bars = contextlib.ExitStack()
    advance = bars.enter_context(_progress.progress(steps, "training", progress and main and start < steps,
                                                    completed=start, fields=("loss", "ips")))
    shown = start
    if main and start < steps:
        _trim_log(out_dir / "log.jsonl", start)
    log = (out_dir / "log.jsonl").open("a") if main and start < steps else None
    running, t_last, seen = None, time.perf_counter(), 0

    def save(step):
        if main:
            ckpt.save_checkpoint(out_dir, net, ema=ema_net, optimizer=opt, step=step, train_config=settings)
        if world > 1:
            dist.barrier()

    try:
        net.train()
        for step in range(start, steps):
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
            x0, t, z = _batch(images_dev, step, seed, batch_size, flip, t_min, t_power)
            sl = slice(rank * local_bs, (rank + 1) * local_bs)
            x0, t, z = x0[sl].to(device), t[sl].to(device), z[sl].to(device)
            a = net.sde.alpha(t)[:, None, None, None]
            s = net.sde.sigma(t)[:, None, None, None]
            xt = a * x0 + s * z
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                pred = model(xt, net.sde.network_time(t))
            loss = F.mse_loss(pred.float(), z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            decay = min(ema, (1 + step) / (10 + step)) if ema_warmup else ema
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)

            done = step + 1
            value = float(loss.detach())
            if world > 1 and (done % log_every == 0 or done == steps):
                buf = torch.tensor([value], device=device)
                dist.all_reduce(buf)
                value = float(buf) / world
            running = value if running is None else 0.98 * running + 0.02 * value
            seen += batch_size
            if done % 5 == 0 or done == steps:
                now = time.perf_counter()
                advance(done - shown, loss=running, ips=seen / max(now - t_last, 1e-9))
                t_last, seen, shown = now, 0, done
            if log and (done % log_every == 0 or done == steps):
                log.write(json.dumps({"step": done, "loss": value, "loss_avg": running, "lr": opt.param_groups[0]["lr"],
                                      "time": time.time()}) + "\n")
                log.flush()
            if save_every and done % save_every == 0 and done != steps:
                save(done)
            if sample_every and done % sample_every == 0 and main:
                _sample_grid(ema_net, out_dir / "samples" / f"step-{done:07d}.png", seed, sample_steps)
        if start < steps or not ckpt.is_curate_checkpoint(out_dir):
            save(steps if start < steps else start)
    finally:
        bars.close()
        if log:
            log.close()
    return ema_net.eval()


def _sample_grid(model, path: Path, seed: int, steps: int, n: int = 64) -> None:
    """An 8x8 PNG grid of PF-ODE samples from the EMA model."""
    from torchvision.utils import save_image

    from curate.sampling import sample

    x = sample(model, n, steps=steps, seed=seed, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    save_image((x + 1) / 2, tmp, nrow=int(math.sqrt(n)), padding=1)
    os.replace(tmp, path)



def step_seconds(preset: str, image_size: int, channels: int, batch_size: int, *, device=None,
                 steps: int = 2) -> float:
    """Seconds per optimizer step of :func:`train` for a U-Net ``preset`` at this size and batch,
    measured over ``steps`` steps after one warm-up step (a throughput probe for estimates)."""
    import time

    from curate.models.unet import build_unet

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = build_unet(preset, image_size=image_size, channels=channels).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(batch_size, channels, image_size, image_size, device=device)
    t = torch.rand(batch_size, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (net(x, net.sde.network_time(t)) - x).square().mean()
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps
