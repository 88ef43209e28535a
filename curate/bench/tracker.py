"""Benchmarks of the tracker, measured as ratios against baselines in the same run.

* forward: plain batched network forward passes at the same number of network
  evaluations and the same batch shapes as the tracker -- the floor the tracker can
  reach; ``tracker / forward`` is the tracker's own overhead.
* per-image loop: :mod:`curate.volume_reference`, one image at a time with
  Gram-Schmidt in a Python loop, like the paper's code.
* default arguments: ``track_volume_growth(model, images, axes=N, steps=T)`` with every
  other argument left at its default, against the same call with ``divergence=None``
  (what Algorithm 1 needs): a default must cost only what the caller asked for.

Long settings (T = 1000) are timed over ``max_steps`` steps and reported per image at
the full T: every step costs the same, so the ratio does not depend on T.
"""
from __future__ import annotations

import platform
import resource
import time
from dataclasses import asdict, dataclass

import torch

from curate import sde
from curate.models import base
from curate.volume import track_volume_growth
from curate.volume_reference import reference_log_growth


@dataclass
class TrackerBench:
    axes: int
    steps: int
    timed_steps: int
    images: int
    evals_per_image: int
    tracker_s_per_image: float
    forward_s_per_image: float
    loop_s_per_image: float
    peak_mem_mb: float
    default_s_per_image: float = float("nan")
    no_divergence_s_per_image: float = float("nan")

    @property
    def overhead(self) -> float:
        """Tracker time / forward time at equal network evaluations (1.0 is ideal)."""
        return self.tracker_s_per_image / self.forward_s_per_image

    @property
    def speedup_vs_loop(self) -> float:
        return self.loop_s_per_image / self.tracker_s_per_image

    @property
    def default_cost(self) -> float:
        """Time of the call with default arguments / the same call with divergence=None."""
        return self.default_s_per_image / self.no_divergence_s_per_image


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_of(fns, repeats, device) -> list[float]:
    """Best wall time of each function, interleaving them so drifting load hits all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def bench_tracker(model, images: torch.Tensor, *, axes: int, steps: int, max_steps: int = 20,
                  loop_steps: int = 3, loop_images: int = 1, repeats: int = 3,
                  dtype: torch.dtype | None = None) -> TrackerBench:
    """Time the batched tracker, forward passes and the per-image loop for one setting.

    images: (B, C, H, W) on the model's device. All of B goes into one chunk, so the
    tracker and the forward baseline make identical network calls.
    """
    device = images.device
    B = images.shape[0]
    T = min(steps, max_steps)
    rows = B * (axes + 1)
    x = images.to(dtype or images.dtype)
    kw = dict(axes=axes, steps=T, divergence=None, batch_size=B, eval_batch=rows, dtype=x.dtype)
    z = x.repeat_interleave(axes + 1, dim=0)
    ts = sde.of(model).time_grid(T).tolist()

    def forward():
        with torch.no_grad():
            for k in range(T):
                base.eps(model, z, torch.full((rows,), ts[k], dtype=z.dtype, device=device))

    track_volume_growth(model, x, **{**kw, "steps": 1})  # warm-up
    forward()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_track, t_fwd = _best_of([lambda: track_volume_growth(model, x, **kw), forward], repeats, device)
    peak = _peak_mb(device)
    # Default arguments vs divergence=None: the same images and settings, default chunking.
    t_default, t_none = _best_of([lambda: track_volume_growth(model, x, axes=axes, steps=T),
                                  lambda: track_volume_growth(model, x, axes=axes, steps=T, divergence=None)],
                                 repeats, device)

    Tl = min(T, loop_steps)
    with torch.no_grad():
        reference_log_growth(model, x[0].cpu() if device.type == "cpu" else x[0], axes=axes, sigma=0.05, steps=1)
        t0 = time.perf_counter()
        for i in range(min(loop_images, B)):
            reference_log_growth(model, x[i], axes=axes, sigma=0.05, steps=Tl)
        _sync(device)
        t_loop = (time.perf_counter() - t0) / min(loop_images, B)

    scale = steps / T  # extrapolate per-step cost to the full T
    return TrackerBench(
        axes=axes, steps=steps, timed_steps=T, images=B, evals_per_image=(axes + 1) * steps,
        tracker_s_per_image=t_track / B * scale, forward_s_per_image=t_fwd / B * scale,
        loop_s_per_image=t_loop * steps / Tl, peak_mem_mb=peak,
        default_s_per_image=t_default / B * scale, no_divergence_s_per_image=t_none / B * scale,
    )


def describe_environment(device) -> dict:
    info = dict(torch=torch.__version__, python=platform.python_version(), device=str(device),
                threads=torch.get_num_threads())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def results_table(rows: list[TrackerBench], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("N", "T", "timed", "B", "evals/img", "tracker img/s", "forward img/s", "loop img/s",
                "overhead", "vs loop", "default cost", "peak MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.axes), str(r.steps), str(r.timed_steps), str(r.images), str(r.evals_per_image),
                      f"{1 / r.tracker_s_per_image:.4g}", f"{1 / r.forward_s_per_image:.4g}",
                      f"{1 / r.loop_s_per_image:.4g}", f"{r.overhead:.3f}", f"{r.speedup_vs_loop:.1f}x",
                      f"{r.default_cost:.3f}", f"{r.peak_mem_mb:.0f}")
    return table


def as_dict(r: TrackerBench) -> dict:
    return dict(asdict(r), overhead=r.overhead, speedup_vs_loop=r.speedup_vs_loop, default_cost=r.default_cost)


def autocast_error(model, images: torch.Tensor, *, axes: int, steps: int, autocast: torch.dtype) -> dict:
    """Log growth with the network under ``autocast`` against float32, on the same images."""
    from scipy.stats import spearmanr

    kw = dict(axes=axes, steps=steps, divergence=None, dtype=torch.float32)
    device = images.device
    ref = track_volume_growth(model, images, **kw)
    low = track_volume_growth(model, images, autocast=autocast, **kw)
    t_ref, t_low = _best_of([lambda: track_volume_growth(model, images, **kw),
                             lambda: track_volume_growth(model, images, autocast=autocast, **kw)], 2, device)
    return dict(_growth_error(low, ref),
                spearman=float(spearmanr(ref.log_growth.numpy(), low.log_growth.numpy()).statistic),
                speedup=t_ref / t_low)


def _growth_error(got, ref) -> dict:
    """Largest absolute and relative change of log growth (B,) against a reference run."""
    diff = (got.log_growth - ref.log_growth).abs()
    return dict(max_abs=float(diff.max()), max_rel=float((diff / ref.log_growth.abs().clamp_min(1e-12)).max()))


def _tracker_with_tf32(model, images: torch.Tensor, kw: dict, tf32: bool):
    """A tracker call with TF32 matmuls/convolutions set to ``tf32``; the flags are restored."""
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    prev = [f.allow_tf32 for f in flags]
    for f in flags:
        f.allow_tf32 = tf32
    try:
        return track_volume_growth(model, images, **kw)
    finally:
        for f, v in zip(flags, prev):
            f.allow_tf32 = v


def fast_error(plain, fast, images: torch.Tensor, *, axes: int, steps: int, tf32: bool = False) -> dict:
    """Log growth of ``fast`` (:func:`curate.models.speed.fast_model`, TF32 when ``tf32``)
    against ``plain`` in strict float32, on the same images; and their speed ratio."""
    kw = dict(axes=axes, steps=steps, divergence=None, dtype=torch.float32)
    runs = [lambda: _tracker_with_tf32(plain, images, kw, False), lambda: _tracker_with_tf32(fast, images, kw, tf32)]
    ref, got = runs[0](), runs[1]()
    t_ref, t_fast = _best_of(runs, 2, images.device)
    return dict(_growth_error(got, ref), speedup=t_ref / t_fast)
