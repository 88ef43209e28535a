"""`curate sample`: draw images from a model folder (curate checkpoint or diffusers UNet2DModel)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="sample images with the PF-ODE (Euler, Heun) or Euler-Maruyama",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None,
                   help="a curate checkpoint or a diffusers UNet2DModel folder (as in `curate score --model`)")
    p.add_argument("--out", default=None,
                   help="a .safetensors file (tensor 'images', float in [-1, 1]) or a folder for PNGs")
    p.add_argument("legacy", nargs="*", help=argparse.SUPPRESS)  # the former `curate sample MODEL OUT`
    p.add_argument("-n", "--n", type=int, default=64, help="number of images")
    p.add_argument("--method", default="euler", choices=("euler", "heun", "em"))
    p.add_argument("--steps", type=int, default=1000, help="integration steps (999 = the paper's grid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--weights", default="ema", choices=("ema", "model"), help="which weights of a curate checkpoint")
    p.add_argument("--grid", default=None, help="also write an image grid PNG here")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math
    import sys
    from pathlib import Path

    from curate.models.checkpoint import load_model
    from curate.sampling import sample

    if args.legacy:  # deprecated positional form, kept for one release
        import warnings

        if len(args.legacy) != 2 or args.model or args.out:
            raise SystemExit("error: give --model PATH --out PATH")
        warnings.warn("`curate sample MODEL OUT` is deprecated; use `curate sample --model MODEL --out OUT`",
                      DeprecationWarning, stacklevel=1)
        print("note: `curate sample MODEL OUT` is deprecated; use --model MODEL --out OUT", file=sys.stderr)
        args.model, args.out = args.legacy
    if not args.model or not args.out:
        raise SystemExit("error: curate sample needs --model PATH and --out PATH")
    model = load_model(args.model, device=args.device, weights=args.weights)
    x = sample(model, args.n, method=args.method, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
               progress=not args.no_progress)
    out = Path(args.out)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": str(args.model), "method": args.method, "steps": str(args.steps), "seed": str(args.seed)}
        save_file({"images": x.contiguous()}, str(out), metadata=meta)
    else:
        from PIL import Image

        from curate.data.tensors import from_model_range

        out.mkdir(parents=True, exist_ok=True)
        u8 = from_model_range(x).permute(0, 2, 3, 1).numpy()
        for i, a in enumerate(u8):
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(out / f"sample_{i:05d}.png")
    if args.grid:
        from torchvision.utils import save_image

        save_image((x + 1) / 2, args.grid, nrow=max(1, int(math.ceil(math.sqrt(args.n)))), padding=1)
    print(f"wrote {args.n} samples to {out}")
    return 0
