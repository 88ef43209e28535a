"""`curate memorization`: which training images do generated samples copy?"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "memorization",
        help="find training images that generated samples reproduce (Carlini / Gu criteria)",
        description=(
            "Exact nearest-neighbour search (L2 in pixel space) of generated samples in a "
            "training set, the Carlini et al. 2023 and Gu et al. 2023 criteria, and per-training-"
            "image reproduction counts. Inputs are safetensors files holding one (n, C, H, W) "
            "tensor each: uint8 in [0, 255] or float in [-1, 1] (both files in the same units)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--samples", required=True, help="safetensors file with the generated samples")
    p.add_argument("--train", required=True, help="safetensors file with the training images")
    p.add_argument("--key", default=None, help="tensor name inside the files (default: the only tensor)")
    p.add_argument("--alpha", type=float, default=0.5, help="Carlini alpha_c")
    p.add_argument("--n-nearest", type=int, default=50, help="Carlini n_c")
    p.add_argument("--gu-threshold", type=float, default=1 / 3, help="Gu ratio threshold")
    p.add_argument("--rms-threshold", type=float, default=0.10,
                   help="plain criterion: nn_1 RMS pixel distance on the [-1, 1] scale below this")
    p.add_argument("--no-dedupe", action="store_true", help="do not merge exact duplicates of the training set")
    p.add_argument("--memory-mb", type=float, default=256.0, help="memory budget of one distance block")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto")
    p.add_argument("--out", default=None, help="write the summary and per-image counts as JSON here")
    p.add_argument("--save", default=None, help="also save all tensors: PATH.safetensors + PATH.json")
    p.add_argument("--top", type=int, default=10, help="rows of the most reproduced images to print")
    p.set_defaults(func=_run)


def _read(path: str, key: str | None):
    import torch
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises several types for a bad header
        raise SystemExit(f"error: cannot read {path} as a safetensors file: {exc}") from None
    if key is None:
        if len(tensors) != 1:
            raise SystemExit(f"error: {path} holds {sorted(tensors)}; choose one with --key")
        (x,) = tensors.values()
    elif key not in tensors:
        raise SystemExit(f"error: {path} has no tensor {key!r}; it holds {sorted(tensors)}")
    else:
        x = tensors[key]
    if x.dim() < 2:
        raise SystemExit(f"error: {path}: expected images (n, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    return x.float()


def _run(args) -> int:
    import json
    import os
    import tempfile
    from pathlib import Path

    import torch
    from rich.console import Console
    from rich.table import Table

    from curate.memorization import find_memorized

    samples, train = _read(args.samples, args.key), _read(args.train, args.key)
    if samples.shape[1:] != train.shape[1:]:
        raise SystemExit(f"error: samples are {tuple(samples.shape[1:])} but training images are {tuple(train.shape[1:])}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    res = find_memorized(
        samples.to(device), train.to(device), alpha=args.alpha, n_nearest=args.n_nearest,
        gu_threshold=args.gu_threshold, rms_threshold=args.rms_threshold, dedupe=not args.no_dedupe, memory_mb=args.memory_mb, progress=True,
    )
    summary = res.summary()
    console = Console()
    console.print(summary)
    counts = res.counts_carlini.cpu()
    order = torch.argsort(counts, descending=True, stable=True)[: args.top]
    table = Table(title="most reproduced training images")
    for col in ("train index", "Carlini count", "Gu count", "RMS count"):
        table.add_column(col, justify="right")
    for i in order.tolist():
        if counts[i] == 0:
            break
        table.add_row(str(i), str(int(counts[i])), str(int(res.counts_gu[i])), str(int(res.counts_rms[i])))
    console.print(table)
    if args.save:
        res.save(args.save)
    if args.out:
        data = dict(summary, counts_carlini=res.counts_carlini.tolist(), counts_gu=res.counts_gu.tolist(),
                    counts_rms=res.counts_rms.tolist(),
                    nn_index=res.nn_index[:, 0].tolist(), carlini_ratio=res.carlini_ratio.tolist(),
                    gu_ratio=[None if r != r else r for r in res.gu_ratio.tolist()])
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, out)
    return 0
