"""`curate bench tracker`: the tracker against forward passes and a per-image loop;
`curate bench suite`: the issue's figures for one device in one command;
`curate bench dedupe`: near-duplicate search on CIFAR-10 with planted edited copies."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks, reported as ratios against baselines in the same run",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bsub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = bsub.add_parser("tracker", help="batched tracker vs forward passes vs the paper-style per-image loop",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--preset", default="tiny", help="U-Net preset (tiny, small, paper)")
    t.add_argument("--image-size", type=int, default=16, help="image side in pixels")
    t.add_argument("--channels", type=int, default=1, help="image channels")
    t.add_argument("--images", type=int, default=None,
                   help="images per setting; None: 2 at N=100, 256 at N=1")
    t.add_argument("--settings", default="100x1000,1x1",
                   help="comma-separated NxT settings (axes x steps)")
    t.add_argument("--max-steps", type=int, default=10,
                   help="steps actually timed; the per-image figures are scaled to the full T")
    t.add_argument("--loop-steps", type=int, default=3, help="steps timed for the per-image loop")
    t.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    t.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="network dtype")
    t.add_argument("--autocast", default=None, choices=["bf16", "fp16"],
                   help="also time the network under autocast and report its error in log growth vs float32")
    t.add_argument("--channels-last", action="store_true", help="run the network channels-last (NHWC)")
    t.add_argument("--compile", default=None, nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the network (default backend when given: inductor)")
    t.add_argument("--tf32", action="store_true",
                   help="allow TF32 matmuls/convolutions (CUDA) and report its log-growth error")
    t.add_argument("--json", default=None, help="also write the results to this JSON file")
    t.set_defaults(func=_tracker)

    u = bsub.add_parser(
        "suite", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="the paper U-Net at N=1,T=1 and N=100,T=1000 on one device: overhead, images/s, "
             "per-image loop, peak memory, bf16 error (CUDA), channels-last + compile (CUDA)",
        description="One command for a GPU check, sized for minutes on one H200 (not yet run on one; "
                    "torch.compile's first compilations dominate). On a 2-core CPU without --fast "
                    "it took 1.5 minutes. Writes one JSON per run into --out.")
    u.add_argument("--preset", default="paper", help="U-Net preset")
    u.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    u.add_argument("--channels", type=int, default=3, help="image channels")
    u.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    u.add_argument("--out", default="bench-results", help="folder for the JSON files")
    u.add_argument("--fast", default=None, choices=["on", "off"],
                   help="also run channels-last + torch.compile (default: on for CUDA, off for CPU)")
    u.set_defaults(func=_suite)

    from curate.bench import sampler as sampler_bench

    sm = bsub.add_parser("sampler", help="curate.sample against bare forward passes (target ratio >= 0.9), "
                         "and the audit's matching", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sampler_bench.add_arguments(sm)
    sm.set_defaults(func=lambda args: sampler_bench.run(args))

    from curate.bench.dedupe_options import DESCRIPTION, add_arguments

    d = bsub.add_parser("dedupe", help=DESCRIPTION, description=DESCRIPTION + ". See curate.bench.dedupe.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(d)
    d.set_defaults(func=_dedupe)


def _dedupe(args) -> int:
    from curate.bench.dedupe import run

    run(args)
    return 0


def _random_images(args, n: int, *, seed: int, device):
    """(n, C, H, W) uniform in [-1, 1], the same for a seed on every device."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, args.channels, args.image_size, args.image_size), generator=g) * 2 - 1).to(device)


def _tracker(args) -> int:
    import torch
    from rich.console import Console

    from curate.bench.tracker import as_dict, bench_tracker, describe_environment, results_table
    from curate.models.unet import build_unet

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = build_unet(args.preset, image_size=args.image_size, channels=args.channels).to(device).eval()
    with torch.no_grad():  # the output conv starts at zero (eps = 0); give it weights to measure errors
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    plain = model
    if args.channels_last or args.compile or args.tf32:
        import copy

        from curate.models.speed import fast_model

        model = fast_model(copy.deepcopy(model), channels_last=args.channels_last, compile=args.compile or False,
                           tf32=True if args.tf32 else None)
    console = Console(width=max(120, Console().width))
    env = describe_environment(device)
    env.update(channels_last=bool(args.channels_last), compile=args.compile, tf32=bool(args.tf32))
    console.print(f"[bold]curate bench tracker[/] model=U-Net '{args.preset}' "
                  f"{args.channels}x{args.image_size}x{args.image_size}, dtype={args.dtype}, {env}")
    rows = []
    for setting in args.settings.split(","):
        n, t = (int(v) for v in setting.lower().split("x"))
        b = args.images or (2 if n >= 50 else 256)
        x = _random_images(args, b, seed=1, device=device)
        rows.append(bench_tracker(model, x, axes=n, steps=t, max_steps=args.max_steps,
                                  loop_steps=args.loop_steps, repeats=args.repeats, dtype=dtype))
    console.print(results_table(rows, "images/s (per image at the full T); overhead = tracker time / "
                                      "forward time at equal network evaluations"))
    for r in rows:
        console.print(f"N={r.axes}, T={r.steps}: overhead ratio {r.overhead:.3f}; "
                      f"per-image loop / tracker = {r.speedup_vs_loop:.1f}; default arguments / "
                      f"divergence=None = {r.default_cost:.3f}")
    extra = {}
    n_check = min(8, args.images or 8)  # images for the numeric checks
    if args.autocast:
        from curate.bench.tracker import autocast_error

        ac = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]
        for setting in args.settings.split(","):
            n, t = (int(v) for v in setting.lower().split("x"))
            x = _random_images(args, n_check, seed=2, device=device)
            err = autocast_error(model, x, axes=n, steps=min(t, args.max_steps), autocast=ac)
            extra[f"{args.autocast}_{setting}"] = err
            console.print(f"autocast {args.autocast}, N={n}, T={min(t, args.max_steps)}: log growth "
                          f"max |error| {err['max_abs']:.3g}, relative {err['max_rel']:.3g}; "
                          f"Spearman with float32 {err['spearman']:.4f}; speed {err['speedup']:.2f}x")
    if args.channels_last or args.compile or args.tf32:
        from curate.bench.tracker import fast_error

        x = _random_images(args, n_check, seed=2, device=device)
        n, t = (int(v) for v in args.settings.split(",")[0].lower().split("x"))
        err = fast_error(plain, model, x, axes=n, steps=min(t, args.max_steps), tf32=bool(args.tf32))
        extra["fast_vs_plain_float32"] = err
        console.print(f"channels-last/compile/TF32 vs plain float32, N={n}, T={min(t, args.max_steps)}: log growth "
                      f"max |error| {err['max_abs']:.3g}, relative {err['max_rel']:.3g}; "
                      f"speed {err['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(environment=env, preset=args.preset, results=[as_dict(r) for r in rows],
                           numerics=extra), fh, indent=2)
    return 0


def _suite(args) -> int:
    """`curate bench tracker` over the settings of the performance issue, sized per device."""
    import os

    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    os.makedirs(args.out, exist_ok=True)
    # (label, settings, images, timed steps, extra flags); CPU sizes keep the paper U-Net
    # within minutes on 2 cores, GPU sizes fill the chip (rows per call = images x (N + 1)).
    runs = [("n1t1", "1x1", 2048 if cuda else 8, 1), ("n100t1000", "100x1000", 32 if cuda else 1, 5 if cuda else 1)]
    fast = (args.fast or ("on" if cuda else "off")) == "on"
    for label, setting, images, steps in runs:
        for variant in (["plain", "fast"] if fast else ["plain"]):
            ns = argparse.Namespace(
                preset=args.preset, image_size=args.image_size, channels=args.channels, images=images,
                settings=setting, max_steps=steps, loop_steps=1, repeats=3, device=device, dtype="float32",
                autocast="bf16" if cuda and variant == "plain" else None,
                channels_last=variant == "fast", compile="inductor" if variant == "fast" else None,
                tf32=False, json=os.path.join(args.out, f"bench_{device}_{label}_{variant}.json"))
            _tracker(ns)
    return 0
