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
