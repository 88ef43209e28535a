"""The `curate bench tracker` and `curate bench suite` runs: build the network, time each
setting with :mod:`curate.bench.tracker`, print the table, write the JSON."""
from __future__ import annotations

import json

import torch

from curate.bench.tracker import as_dict, autocast_error, bench_tracker, describe_environment, fast_error, results_table


def random_images(n: int, channels: int, image_size: int, *, seed: int, device) -> torch.Tensor:
    """(n, C, H, W) uniform in [-1, 1], the same for a seed on every device."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, channels, image_size, image_size), generator=g) * 2 - 1).to(device)


def run_tracker(*, preset: str, image_size: int, channels: int, images: int | None, settings: str, max_steps: int,
                loop_steps: int, repeats: int, device: str, dtype: str, autocast: str | None = None,
                channels_last: bool = False, compile: str | None = None, tf32: bool = False,
                json_path: str | None = None) -> dict:
    """`curate bench tracker`: a U-Net ``preset`` at this size, every ``NxT`` of ``settings``
    timed against forward passes and the per-image loop; the table on the console, and the
    results (environment, rows, numeric checks) returned and written to ``json_path``."""
    from rich.console import Console

    from curate.models.unet import build_unet

    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                          else ("cpu" if device == "auto" else device))
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    model = build_unet(preset, image_size=image_size, channels=channels).to(device).eval()
    with torch.no_grad():  # the output conv starts at zero (eps = 0); give it weights to measure errors
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    plain = model
    if channels_last or compile or tf32:
        import copy

        from curate.models.speed import fast_model

        model = fast_model(copy.deepcopy(model), channels_last=channels_last, compile=compile or False,
                           tf32=True if tf32 else None)
    console = Console(width=max(120, Console().width))
    env = describe_environment(device)
    env.update(channels_last=bool(channels_last), compile=compile, tf32=bool(tf32))
    console.print(f"[bold]curate bench tracker[/] model=U-Net '{preset}' "
                  f"{channels}x{image_size}x{image_size}, dtype={dtype}, {env}")
    rows = []
    for setting in settings.split(","):
        n, t = (int(v) for v in setting.lower().split("x"))
        b = images or (2 if n >= 50 else 256)
        x = random_images(b, channels, image_size, seed=1, device=device)
        rows.append(bench_tracker(model, x, axes=n, steps=t, max_steps=max_steps,
                                  loop_steps=loop_steps, repeats=repeats, dtype=torch_dtype))
    console.print(results_table(rows, "images/s (per image at the full T); overhead = tracker time / "
                                      "forward time at equal network evaluations"))
    for r in rows:
        console.print(f"N={r.axes}, T={r.steps}: overhead ratio {r.overhead:.3f}; "
                      f"per-image loop / tracker = {r.speedup_vs_loop:.1f}; default arguments / "
                      f"divergence=None = {r.default_cost:.3f}")
    extra = {}
    n_check = min(8, images or 8)  # images for the numeric checks
    if autocast:
        ac = {"bf16": torch.bfloat16, "fp16": torch.float16}[autocast]
        for setting in settings.split(","):
            n, t = (int(v) for v in setting.lower().split("x"))
            x = random_images(n_check, channels, image_size, seed=2, device=device)
            err = autocast_error(model, x, axes=n, steps=min(t, max_steps), autocast=ac)
            extra[f"{autocast}_{setting}"] = err
            console.print(f"autocast {autocast}, N={n}, T={min(t, max_steps)}: log growth "
                          f"max |error| {err['max_abs']:.3g}, relative {err['max_rel']:.3g}; "
                          f"Spearman with float32 {err['spearman']:.4f}; speed {err['speedup']:.2f}x")
    if channels_last or compile or tf32:
        x = random_images(n_check, channels, image_size, seed=2, device=device)
        n, t = (int(v) for v in settings.split(",")[0].lower().split("x"))
        err = fast_error(plain, model, x, axes=n, steps=min(t, max_steps), tf32=bool(tf32))
        extra["fast_vs_plain_float32"] = err
        console.print(f"channels-last/compile/TF32 vs plain float32, N={n}, T={min(t, max_steps)}: log growth "
                      f"max |error| {err['max_abs']:.3g}, relative {err['max_rel']:.3g}; "
                      f"speed {err['speedup']:.2f}x")
    result = dict(environment=env, preset=preset, results=[as_dict(r) for r in rows], numerics=extra)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


def run_suite(*, preset: str, image_size: int, channels: int, device: str, out: str, fast: str | None) -> None:
    """`curate bench suite`: :func:`run_tracker` at N=1, T=1 and N=100, T=1000, sized per
    device, one JSON per run in ``out``."""
    import os

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    os.makedirs(out, exist_ok=True)
    # (label, settings, images, timed steps, extra flags); CPU sizes keep the paper U-Net
    # within minutes on 2 cores, GPU sizes fill the chip (rows per call = images x (N + 1)).
    runs = [("n1t1", "1x1", 2048 if cuda else 8, 1), ("n100t1000", "100x1000", 32 if cuda else 1, 5 if cuda else 1)]
    fast = (fast or ("on" if cuda else "off")) == "on"
    for label, setting, images, steps in runs:
        for variant in (["plain", "fast"] if fast else ["plain"]):
            run_tracker(preset=preset, image_size=image_size, channels=channels, images=images,
                        settings=setting, max_steps=steps, loop_steps=1, repeats=3, device=device, dtype="float32",
                        autocast="bf16" if cuda and variant == "plain" else None,
                        channels_last=variant == "fast", compile="inductor" if variant == "fast" else None,
                        tf32=False, json_path=os.path.join(out, f"bench_{device}_{label}_{variant}.json"))
