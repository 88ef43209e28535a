"""A small learned pair verifier, shipped with its weights: a network that sees both images
of a pair at once.

Where a strongly edited copy and a look-alike of a crowd are equally far by the aligned
distance and equally close by the copy embedding's cosine (the ratio test's band and just
beyond it), a network that compares the two images pixel against pixel separates them
better (docs/near-duplicates.md, "The band set"). :func:`curate.duplicates.find_pairs`
asks it when given (step 7; ``cb.dedupe(verifier=True)``, ``curate dedupe --verifier``).

* network: seven 3x3 conv-BN-ReLU layers (32 to 128 channels, three of stride 2) on the
  two standardised images stacked as six channels, global average pooling, a linear map to
  one logit of "the same shot" (0.44 M parameters);
* input: each image resampled to 32x32 and standardised to mean 0 and SD 1, as the copy
  embedding's (:mod:`curate.duplicates.copy_embedding`);
* the logit of a pair is averaged over both orders and the joint mirror image, the better
  of the pair as it is and with one image mirrored (a mirrored copy is a copy): symmetric in
  the pair's order;
* trained 2,000 steps on CIFAR-10's training images: positives an image and its edited
  views (the heavier edit model), negatives mined look-alike pairs at aligned distance
  0.2-0.6, none touching a labelled real pair
  (``python -m curate.bench.real_pairs verifier --steps 2000``, which writes these weights
  as ``DIR/pair_verifier_2000.safetensors``: ``curate/bench/_pair_verifier.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from curate.duplicates.copy_embedding import block, network_input, standardise

#: The shipped weights (safetensors: loading runs no code).
WEIGHTS = Path(__file__).resolve().with_name("copy_verifier.safetensors")
WIDTH = 16


def network(width: int = WIDTH) -> torch.nn.Module:
    """(B, 6, 32, 32) two standardised images -> (B,) logits of "the same shot"."""
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.f = nn.Sequential(block(6, 2 * w, 1), block(2 * w, 2 * w, 1), block(2 * w, 4 * w, 2),
                                   block(4 * w, 4 * w, 1), block(4 * w, 8 * w, 2), block(8 * w, 8 * w, 1),
                                   block(8 * w, 8 * w, 2))
            self.head = nn.Linear(8 * w, 1)

        def forward(self, x):
            return self.head(self.f(x).mean((2, 3)))[:, 0]

    return Net()


def load(weights: Path | str = WEIGHTS) -> torch.nn.Module:
    """The network with ``weights`` (default: the shipped ones), in eval mode, its weights
    channels-last (a third faster on CPU than contiguous; logits within ~1e-5)."""
    from safetensors.torch import load_file

    net = network()
    net.load_state_dict(load_file(str(weights)))
    return net.eval().to(memory_format=torch.channels_last)


def symmetric_logits(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(m,) float64 logits of pairs of standardised images a, b (m, 3, 32, 32): the mean over
    both orders and the joint mirror image, the better of the pair as it is and with one
    image mirrored."""
    ma, mb = a.flip(3), b.flip(3)

    def mean_logit(*orders):
        return np.mean([net(torch.cat([x, z], dim=1).contiguous(memory_format=torch.channels_last)).numpy()
                        for x, z in orders], axis=0)

    with torch.inference_mode():
        plain = mean_logit((a, b), (b, a), (ma, mb), (mb, ma))
        mirrored = mean_logit((a, mb), (mb, a), (ma, b), (b, ma))
    return np.maximum(plain, mirrored).astype(np.float64)


class CopyVerifier:
    """The logit of "the same shot" for pairs of images; batch-invariant (eval mode: no
    statistics across pairs), so a pair's logit does not depend on what it is scored with
    beyond float32 rounding."""

    def __init__(self, weights: Path | str = WEIGHTS):
        self.net = load(weights)
        self._resample: dict = {}

    def logits(self, a, b, chunk: int = 512) -> np.ndarray:
        """a, b (m, C, H, W) in [-1, 1] (C = 1 or 3) -> (m,) float64 logits of the pairs (a_i, b_i)."""
        if len(a) != len(b):
            raise ValueError(f"a and b must hold as many images, got {len(a)} and {len(b)}")
        out = [symmetric_logits(self.net, standardise(network_input(a[s:s + chunk], self._resample)),
                                standardise(network_input(b[s:s + chunk], self._resample)))
               for s in range(0, len(a), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def pair_logits(self, read, pairs: np.ndarray) -> np.ndarray:
        """pairs (m, 2) of rows -> (m,) float64 logits, each image read once: ``read`` (rows
        (k,) -> images (k, C, H, W) in [-1, 1]) is asked for the pairs' distinct rows."""
        rows = np.unique(pairs)
        images, at = read(rows), np.searchsorted(rows, pairs)
        return self.logits(images[at[:, 0]], images[at[:, 1]])


def sharing_reader(read):
    """``read`` (rows (m,) -> images) wrapped so that one call's images are handed once more
    to the next call whose rows are among them, then let go: with the verifier on, find_pairs
    asks the embedding for the band's images and then the verifier for some of them, which
    are then read from disk once."""
    kept = None  # (position of each row, images) of the last call that read, until handed on

    def shared(rows: np.ndarray):
        nonlocal kept
        rows = np.asarray(rows)
        last, kept = kept, None
        if last is not None and all(r in last[0] for r in rows.tolist()):
            return last[1][[last[0][r] for r in rows.tolist()]]
        out = read(rows)
        kept = ({r: i for i, r in enumerate(rows.tolist())}, out)
        return out

    return shared
