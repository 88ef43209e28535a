"""`curate demo`: the tracker on real digits with the exact (perfectly memorizing) score."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="score trained vs held-out digits with the exact score (seconds, CPU)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", type=int, default=64, help="training digits (their flips are added)")
    p.add_argument("--held-out", type=int, default=128, help="held-out digits")
    p.add_argument("--axes", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--method", default="fd", choices=["fd", "jvp"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)


def auroc(pos, neg) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    import torch

    pos, neg = torch.as_tensor(pos).reshape(-1, 1), torch.as_tensor(neg).reshape(1, -1)
    return float(((pos > neg).double() + 0.5 * (pos == neg).double()).mean())


def _demo(args) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from curate import ExactScore, track_volume_growth
    from curate.data.tensors import digits_images

    x = digits_images(dtype=torch.float64)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))
    base = x[perm[: args.train]]
    train = torch.cat([base, base.flip(-1)])
    held = x[perm[args.train: args.train + args.held_out]]
    model = ExactScore(train)
    console = Console()
    console.print(f"ExactScore of {len(train)} digits ({args.train} + flips); scoring {len(train)} trained "
                  f"and {len(held)} held-out digits: N={args.axes}, T={args.steps}, sigma=0.05, {args.method}")
    r = track_volume_growth(model, torch.cat([train, held]), axes=args.axes, steps=args.steps,
                            method=args.method, seed=args.seed, divergence="exact", progress=True)
    n = len(train)
    table = Table(title="trained vs held-out digits (exact score)")
    for col in ("score", "mean trained", "mean held-out", "AUROC (trained higher)"):
        table.add_column(col, justify="right")
    for name, s in (("log volume growth (Alg. 1)", r.log_growth),
                    ("generation log-prob", r.generation_logp)):
        table.add_row(name, f"{s[:n].mean():.2f}", f"{s[n:].mean():.2f}", f"{auroc(s[:n], s[n:]):.3f}")
    console.print(table)
    return 0
