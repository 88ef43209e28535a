"""Benchmark of the sampler: :func:`curate.sample` against bare network forward passes in
the same run, and of the audit's matching.

* sampler: ``sample(model, B, method, steps)`` at batch B;
* forward: the same number of ``model.eps`` calls on (B, C, H, W) inputs, nothing else --
  the floor a sampler can reach. ``ratio = forward time / sampler time`` (1.0: the
  sampler costs only its network evaluations; the issue's target is >= 0.9).
* matching (optional): :func:`curate.reproduction.match` of M generated against N
  training images: seconds, and the flop rate of its float64 distance products.

Each timing is the best of ``repeats``; the two are interleaved so that a busy machine
slows both alike. torch is imported inside the functions: ``curate --help`` reads the
options without paying for it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass


@dataclass
class SamplerBench:
    method: str
    steps: int
    batch: int
    evals: int                # network evaluations per image
    sampler_s: float          # one sampler call (B images)
    forward_s: float          # the same evaluations as bare forward passes
    device: str

    @property
    def ratio(self) -> float:
        """Forward time / sampler time (1.0 is ideal; >= 0.9 is the target)."""
        return self.forward_s / self.sampler_s

    @property
    def images_per_s(self) -> float:
        return self.batch / self.sampler_s

    def to_dict(self) -> dict:
        return dict(asdict(self), ratio=self.ratio, images_per_s=self.images_per_s)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def bench_sampler(model, *, batch: int = 256, steps: int = 20, method: str = "euler", repeats: int = 3,
                  device="cpu") -> SamplerBench:
    """Time ``sample`` and bare forward passes at equal network evaluations (module doc)."""
    import torch

    from curate.models.base import eps as model_eps
    from curate.sampling import image_shape, sample

    shape = image_shape(model)
    evals = steps * (2 if method == "heun" else 1) + 1  # + the final Tweedie step
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((batch,), 0.5, device=device)

    def run_sampler():
        sample(model, batch, method=method, steps=steps, seed=1, batch_size=batch, progress=False, device=device)

    def run_forward():
        with torch.no_grad():
            for _ in range(evals):
                model_eps(model, x, t)

    best = {"sampler": float("inf"), "forward": float("inf")}
    run_forward()  # warm-up (allocator, kernels)
    for _ in range(repeats):
        for name, fn in (("forward", run_forward), ("sampler", run_sampler)):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return SamplerBench(method, steps, batch, evals, best["sampler"], best["forward"], str(device))


def bench_matching(m: int, n: int, shape=(3, 32, 32), *, memory_mb: float = 512.0, device="cpu", seed: int = 0,
                   block: int = 4096):
    """Seconds, float64 GFLOP/s and peak memory of matching m random generated images
    (drawn and matched ``block`` at a time, as the audit does) against n random training
    images (float32, as the loader gives them). The cost does not depend on the pixel values.

    Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the growth of
    the process's peak resident size (``ru_maxrss``) over its size before the training
    images were made (so call it in a fresh process)."""
    import resource

    import torch

    from curate.reproduction import TrainingSet, match

    cuda = torch.device(device).type == "cuda"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    g = torch.Generator().manual_seed(seed)
    train = TrainingSet((torch.rand((n, *shape), generator=g) * 2 - 1).to(device), dedupe=False)
    _sync(device)
    t0 = time.perf_counter()
    for s in range(0, m, block):
        samples = (torch.rand((min(block, m - s), *shape), generator=g) * 2 - 1).to(device)
        match(samples, train, memory_mb=memory_mb)
    _sync(device)
    sec = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0)
    d = train.dim
    return {"m": m, "n": n, "D": d, "memory_mb": memory_mb, "seconds": sec, "gflops": 2.0 * m * n * d / sec / 1e9,
            "peak_mb": peak, "train_mb": n * d * 4 / 2**20, "device": str(device)}


def add_arguments(p) -> None:
    """The options of ``curate bench sampler``."""
    p.add_argument("--preset", default="tiny", help="U-Net preset (tiny, small, paper)")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    p.add_argument("--channels", type=int, default=3, help="image channels")
    p.add_argument("--batch", type=int, default=256, help="images per sampler call")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--method", default="euler", choices=["euler", "heun", "em"], help="sampler")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    p.add_argument("--match", type=int, nargs=2, default=None, metavar=("M", "N"),
                   help="also time matching M generated against N training images (random, --image-size)")
    p.add_argument("--memory-mb", type=float, default=512.0, help="the matching's working-memory bound")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")


def run(args) -> int:
    """``curate bench sampler``: print (and optionally save) the ratio and the matching's time."""
    import json

    import torch
    from rich.console import Console

    from curate.bench.tracker import describe_environment
    from curate.models.unet import build_unet

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    model = build_unet(args.preset, image_size=args.image_size, channels=args.channels).to(device).eval()
    console = Console()
    env = describe_environment(device)
    r = bench_sampler(model, batch=args.batch, steps=args.steps, method=args.method, repeats=args.repeats,
                      device=device)
    console.print(f"[bold]curate bench sampler[/] U-Net '{args.preset}' {args.channels}x{args.image_size}x"
                  f"{args.image_size}, {env}")
    console.print(f"{args.method}, {args.steps} steps, batch {args.batch}: sampler {r.sampler_s:.3f} s "
                  f"({r.images_per_s:.1f} img/s), bare forward passes {r.forward_s:.3f} s at {r.evals} "
                  f"evaluations per image; ratio forward/sampler = {r.ratio:.3f} (target >= 0.9)")
    out = {"environment": env, "preset": args.preset, "sampler": r.to_dict()}
    if args.match:
        mm = bench_matching(args.match[0], args.match[1], (args.channels, args.image_size, args.image_size),
                            memory_mb=args.memory_mb, device=device)
        console.print(f"matching {mm['m']} x {mm['n']} images (D = {mm['D']}): {mm['seconds']:.2f} s, "
                      f"{mm['gflops']:.1f} GFLOP/s float64; peak memory {mm['peak_mb']:.0f} MB (training "
                      f"images {mm['train_mb']:.0f} MB, memory_mb {mm['memory_mb']:g})")
        out["matching"] = mm
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0
