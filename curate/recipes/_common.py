"""What every recipe needs: the log line, the device a config asks for, and timed stages."""
from __future__ import annotations

import time
from typing import Callable

import torch


def log(msg: str) -> None:
    """One line of a recipe's log, flushed at once (long runs are followed with ``tail -f``)."""
    print(msg, flush=True)


def device_of(cfg: dict) -> torch.device:
    """``cfg["device"]``: ``"auto"`` (CUDA when there is one), or a device name."""
    want = cfg.get("device", "auto")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def timed(fn: Callable[[], dict], name: str = "") -> Callable[[], dict]:
    """Wrap a stage so its result records (and the log shows) wall and CPU seconds."""
    def run():
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn() or {}
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        log(f"[stage {name}] finished in {out['seconds']:.1f} s (CPU {out['cpu_seconds']:.1f} s)")
        return out
    return run


def check_hardware(cfg: dict, *, recipe: str, preset: str, trainings: int, image_size: int, channels: int) -> None:
    """Refuse, before anything runs, a preset written for a GPU (``expects = "gpu"``) when
    ``device = "auto"`` finds none: say how long its training alone would take here (a
    probe of two optimizer steps) and name the CPU preset (``cpu_preset``). ``device =
    "cpu"`` runs it anyway."""
    if cfg.get("expects") != "gpu" or cfg.get("device", "auto") != "auto" or device_of(cfg).type != "cpu":
        return
    from curate.training import step_seconds

    m = cfg["model"]
    log(f"{recipe}: preset {preset!r} is written for a GPU and none is here; probing this CPU's training speed ...")
    per_step = step_seconds(m["preset"], image_size, channels, int(m["batch_size"]))
    hours = per_step * int(m["steps"]) * trainings / 3600
    cpu = cfg.get("cpu_preset")
    raise SystemExit(
        f"error: preset {preset!r} expects a GPU. On this CPU its {trainings} training run(s) of {int(m['steps']):,} "
        f"steps ('{m['preset']}' U-Net, {image_size}x{image_size}, batch {int(m['batch_size'])}) would take about "
        f"{hours:,.1f} hours ({per_step:.2f} s per step, measured). "
        + (f"Use --config {cpu} for a run sized for a CPU, or " if cpu else "Use ")
        + "--set device=cpu to run this preset here anyway.")
