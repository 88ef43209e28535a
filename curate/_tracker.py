"""The tracker's inner loop: one chunk of images through T Euler steps of the PF-ODE
(Algorithm 1's lines 3-13, batched over images and axes), the divergence of the score,
and how many network rows fit in a GPU's memory. :func:`curate.track_volume_growth`
validates, chunks and collects; everything here works on one chunk.
"""
from __future__ import annotations

import torch

from curate import _autodiff, _rng, sde
from curate.models import base

#: On the CPU, stop a chunk whose trajectories all failed, checked every this many steps.
_CHECK_EVERY = 64


def rows_that_fit(free_bytes: float, bytes_per_row: float, *, fraction: float = 0.5, floor: int = 256,
                  cap: int = 65536) -> int:
    """Network rows per call that use at most ``fraction`` of ``free_bytes``, within [floor, cap]."""
    if bytes_per_row <= 0:
        return cap
    return int(min(cap, max(floor, fraction * free_bytes // bytes_per_row)))


def _cuda_eval_batch(model, x1: torch.Tensor, autocast, probe_rows: int = 64) -> int:
    """Rows per network call from the GPU's free memory and the peak memory of one probe
    call of ``probe_rows`` rows (x1: one image (1, C, H, W) on the device). The tracker's
    own tensors are small next to the network's activations; the other half of the free
    memory covers them, and an out-of-memory error still halves the chunk."""
    import contextlib

    dev = x1.device
    torch.cuda.synchronize(dev)
    free, _ = torch.cuda.mem_get_info(dev)
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    z = x1.expand(probe_rows, *x1.shape[1:]).contiguous()
    ctx = torch.autocast(dev.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        base.eps(model, z, torch.full((probe_rows,), 0.5, dtype=z.dtype, device=dev))
    torch.cuda.synchronize(dev)
    per_row = (torch.cuda.max_memory_allocated(dev) - before) / probe_rows
    del z
    return rows_that_fit(free, per_row)


def _rows(fn, model, shape, t: float, eval_batch: int, autocast):
    """fn(model, x, t) on flat rows Z (R, D) -> (R, D), in slices of ``eval_batch`` rows.

    ``fn`` is :func:`curate.models.base.drift` or ``score``; under ``autocast`` (a
    torch dtype) the network runs in reduced precision and the result is cast back.
    """

    def apply(z: torch.Tensor) -> torch.Tensor:
        parts = []
        for i in range(0, z.shape[0], eval_batch):
            zi = z[i:i + eval_batch]
            ti = torch.full((zi.shape[0],), t, dtype=zi.dtype, device=zi.device)
            if autocast is None:
                out = fn(model, zi.reshape(-1, *shape), ti)
            else:
                with torch.autocast(zi.device.type, dtype=autocast):
                    out = fn(model, zi.reshape(-1, *shape), ti)
            parts.append(out.reshape(zi.shape[0], -1).to(zi.dtype))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return apply


def orthonormalise(a: torch.Tensor, with_r: bool = False):
    """Gram-Schmidt of the rows of a (B, N, D), in order: QR with a positive diagonal.

    Returns the orthonormal rows (B, N, D), and with ``with_r`` also |diag R| (B, N):
    the extent of each row orthogonal to the rows before it.
    """
    if a.shape[1] == 1:
        n = a.norm(dim=-1)
        q = a / n.unsqueeze(-1)
        return (q, n) if with_r else q
    q, r = torch.linalg.qr(a.transpose(1, 2))  # (B, D, N), (B, N, N)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    q = (q * sign.unsqueeze(1)).transpose(1, 2)
    return (q, d.abs()) if with_r else q


def initial_axes(keys: torch.Tensor, axes: int, dim: int, dtype) -> torch.Tensor:
    """Per-image orthonormal axes (B, N, D): Gram-Schmidt of Gaussian noise (line 3-4).

    Drawn and orthonormalised in float64, then cast, so every dtype starts alike.
    """
    eps = _rng.normal(keys, stream=0, count=axes * dim).reshape(-1, axes, dim)
    return orthonormalise(eps).to(dtype)  # type: ignore[union-attr]


def _sort_desc(diff: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Rows of diff (B, N, D) in descending order of norms (B, N)."""
    if diff.shape[1] == 1:
        return diff
    order = norms.argsort(dim=1, descending=True)
    return diff.gather(1, order.unsqueeze(-1).expand_as(diff))


def _track_chunk(model, x, keys, *, axes, sigma, steps, t_min, method, stretch, divergence, probes,
                 eval_batch, autocast, advance):
    """Track one chunk of images x (B, C, H, W). Returns float64 tensors on x's device."""
    shape = tuple(x.shape[1:])
    B, D, N = x.shape[0], x[0].numel(), axes
    dtype, dev = x.dtype, x.device
    vp = sde.of(model)
    grid = vp.time_grid(steps, t_min)
    ts = grid.tolist()

    x0 = x.reshape(B, D)
    # Lines 3-4: N orthonormal axes around the centre.
    axes_ = initial_axes(keys, N, D, dtype)
    if method == "fd":
        pts = x0.unsqueeze(1) + sigma * axes_  # (B, N, D) surrounding points
        prev = (pts - x0.unsqueeze(1)).norm(dim=-1)
    else:
        pts = axes_  # tangent vectors
        prev = pts.norm(dim=-1)

    log_l = torch.zeros(B, dtype=torch.float64, device=dev)
    div_int = torch.zeros(B, dtype=torch.float64, device=dev)
    curve = torch.empty((B, steps), dtype=torch.float64, device=dev)
    first_bad = torch.full((B,), -1, dtype=torch.long, device=dev)
    bad_kind = torch.zeros(B, dtype=torch.long, device=dev)  # 1: centre, 2: axis

    for k in range(steps):
        f = _rows(base.drift, model, shape, ts[k], eval_batch, autocast)
        if divergence is not None:
            # int nabla.f dt along the centre (left Riemann sum, matching Euler).
            div_s = _score_divergence(model, x0, shape, ts[k], divergence, keys, k, probes,
                                      _rows(base.score, model, shape, ts[k], eval_batch, autocast))
            div_int += vp.dt * vp.drift_divergence(grid[k], div_s.to(torch.float64), D)
        if method == "fd":
            # Lines 6-7: one Euler step of the centre and the surrounding points, together.
            z = torch.cat([x0.unsqueeze(1), pts], 1).reshape(B * (N + 1), D)
            z = (z + vp.dt * f(z)).reshape(B, N + 1, D)
            x0, diff = z[:, 0], z[:, 1:] - z[:, :1]
        else:
            # Tangent mode: (x0, V) -> (Phi(x0), Phi'(x0) V) with Phi(x) = x + dt f(x).
            primal = x0.repeat_interleave(N, dim=0)
            out, jv = _autodiff.jvp(lambda z: z + vp.dt * f(z), primal, pts.reshape(B * N, D))
            x0, diff = out.reshape(B, N, D)[:, 0], jv.reshape(B, N, D)
        norms = diff.norm(dim=-1)
        bad_c = ~torch.isfinite(x0).all(1)
        bad_a = ~(torch.isfinite(norms) & (norms > 0)).all(1) & ~bad_c
        # Keep failed rows finite so they cannot poison QR; their results are discarded.
        dead = (first_bad >= 0) | bad_c | bad_a
        x0 = torch.where(dead.unsqueeze(1), torch.zeros_like(x0), x0)
        diff = torch.where(dead.view(B, 1, 1), axes_, diff)
        norms = torch.where(dead.unsqueeze(1), torch.ones_like(norms), norms)
        # Line 11: sort the axes by stretch, largest first.
        diff = _sort_desc(diff, norms)
        # Line 12: Gram-Schmidt in that order (R's diagonal is each axis's new extent).
        q, rdiag = orthonormalise(diff, with_r=True)
        # Lines 8-10 (Eq. 13): add every axis's log stretch, in float64.
        num = norms if stretch == "norm" else rdiag
        step_log = (torch.log(num.to(torch.float64)) - torch.log(prev.to(torch.float64))).sum(1)
        bad_a |= ~torch.isfinite(step_log) & ~bad_c
        new = (bad_c | bad_a) & (first_bad < 0)
        first_bad = torch.where(new, k, first_bad)
        bad_kind = torch.where(new, torch.where(bad_c, 1, 2), bad_kind)
        log_l += torch.where(first_bad >= 0, torch.zeros_like(step_log), step_log)
        curve[:, k] = log_l
        # Stop early when every trajectory failed -- on the CPU only: on a GPU the check
        # would synchronise with the host, and failed rows cost nothing but their FLOPs.
        if dev.type == "cpu" and (k + 1) % _CHECK_EVERY == 0 and bool((first_bad >= 0).all()):
            advance(steps - k)
            break
        # Line 13: back to radius sigma about the new centre.
        if method == "fd":
            pts = x0.unsqueeze(1) + sigma * q
            prev = (pts - x0.unsqueeze(1)).norm(dim=-1)
        else:
            pts, prev = q, q.norm(dim=-1)
        advance(1)

    prior = vp.prior_logp(x0.to(torch.float64))
    bad = {}
    fb, kind = first_bad.cpu().tolist(), bad_kind.cpu().tolist()
    for i in range(B):
        if fb[i] >= 0:
            what = "the centre trajectory became non-finite (NaN/Inf from the score model?)" if kind[i] == 1 \
                else "an axis stretch became non-finite or zero (finite differences cancelled?)"
            bad[i] = (fb[i], what)
    return dict(log_growth=log_l, prior=prior, div=div_int, curve=curve, bad=bad)


def _score_divergence(model, x0, shape, t, kind, keys, step, probes, s):
    """nabla.s at the centres x0 (B, D), time t: (B,) in x0's dtype; s maps rows to scores."""
    B, D = x0.shape
    if kind == "exact" and callable(getattr(model, "divergence", None)):
        tb = torch.full((B,), t, dtype=x0.dtype, device=x0.device)
        return model.divergence(x0.reshape(B, *shape), tb)
    if kind == "exact":
        # Trace of the Jacobian from D Jacobian-vector products along the unit vectors.
        eye = torch.eye(D, dtype=x0.dtype, device=x0.device)
        primal = x0.repeat_interleave(D, dim=0)
        _, jv = _autodiff.jvp(s, primal, eye.repeat(B, 1))
        return torch.diagonal(jv.reshape(B, D, D), dim1=1, dim2=2).sum(1)
    # Hutchinson: E[z^T (ds/dx) z] with Rademacher z, keyed per image and step.
    z = _rng.rademacher(keys, stream=1 + step, count=probes * D).to(x0.dtype).reshape(B * probes, D)
    primal = x0.repeat_interleave(probes, dim=0)
    _, jv = _autodiff.jvp(s, primal, z)
    return (z * jv).sum(1).reshape(B, probes).mean(1)
