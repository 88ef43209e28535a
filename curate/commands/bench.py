"""`curate bench tracker`: the tracker against forward passes and a per-image loop;
`curate bench suite`: the issue's figures for one device in one command;
`curate bench dedupe`: near-duplicate search on CIFAR-10 with planted edited copies;
`curate bench keys`: the candidate search at a million keys (FAISS vs exact);
`curate bench sampler`: the sampler against bare forward passes."""
from __future__ import annotations

import argparse


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

    kp = bsub.add_parser("keys", help="dedupe's candidate search at a million keys: FAISS's inverted file "
                         "against the exact search (recall, build time and memory, time per query)",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from curate.bench import keys as keys_bench

    keys_bench.add_arguments(kp)
    kp.set_defaults(func=lambda args: keys_bench.run(args) and 0)

    from curate.bench.dedupe_options import DESCRIPTION, add_arguments

    d = bsub.add_parser("dedupe", help=DESCRIPTION, description=DESCRIPTION + ". See curate.bench.dedupe.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(d)
    d.set_defaults(func=_dedupe)


def _dedupe(args) -> int:
    from curate.bench.dedupe import run

    run(args)
    return 0


def _tracker(args) -> int:
    from curate.bench.tracker_run import run_tracker

    run_tracker(preset=args.preset, image_size=args.image_size, channels=args.channels, images=args.images,
                settings=args.settings, max_steps=args.max_steps, loop_steps=args.loop_steps, repeats=args.repeats,
                device=args.device, dtype=args.dtype, autocast=args.autocast, channels_last=args.channels_last,
                compile=args.compile, tf32=args.tf32, json_path=args.json)
    return 0


def _suite(args) -> int:
    from curate.bench.tracker_run import run_suite

    run_suite(preset=args.preset, image_size=args.image_size, channels=args.channels, device=args.device,
              out=args.out, fast=args.fast)
    return 0
