"""`curate train`: train the paper's U-Net (or a smaller preset) with denoising score matching.

Under ``torchrun`` run it as ``torchrun ... -m curate train OUT --data ...``.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="checkpoint folder (created; an existing checkpoint there is resumed)")
    p.add_argument("--data", required=True,
                   help="'digits' (scikit-learn 8x8 digits), a .safetensors/.npy image tensor, or a folder of images")
    p.add_argument("--n", type=int, default=None, help="train on a random subset of this many images")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the --n subset")
    p.add_argument("--image-size", type=int, default=None, help="resize folder images to this side")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="convert folder images to 1 or 3 channels")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"), help="U-Net size")
    p.add_argument("--steps", type=int, default=2000, help="total optimizer steps (a resumed run continues to this)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (split over torchrun ranks)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    p.add_argument("--warmup", type=int, default=100, help="linear learning-rate warm-up steps")
    p.add_argument("--ema", type=float, default=0.9999, help="EMA decay (with warm-up min(ema, (1+s)/(10+s)))")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing checkpoint")
    p.add_argument("--sample-every", type=int, default=0, help="write a grid of EMA samples every this many steps")
    p.add_argument("--sample-steps", type=int, default=100, help="Euler steps for the sample grids")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every this many steps")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--t-power", type=float, default=1.0,
                   help="draw t = t_min + (1 - t_min) u^p; 1 = uniform (paper), >1 favours small t")
    p.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from curate.training import train
    from curate.training_data import read_training_images

    images = read_training_images(args.data, n=args.n, subset_seed=args.subset_seed, image_size=args.image_size,
                         channels=args.channels)
    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    train(images, args.out, preset=args.preset, model_config=overrides, steps=args.steps,
          batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, ema=args.ema, flip=not args.no_flip,
          seed=args.seed, resume=not args.no_resume, progress=not args.no_progress,
          sample_every=args.sample_every, sample_steps=args.sample_steps, save_every=args.save_every,
          grad_clip=args.grad_clip, t_power=args.t_power, device=args.device, amp=not args.no_amp)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a diffusion U-Net (resumable; torchrun for multi-GPU)",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
