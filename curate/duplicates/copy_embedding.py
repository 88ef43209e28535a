"""A small learned copy-detection embedding, shipped with its weights.

A network maps an image and its edited copies (crops, shifts, resampling, colour, gamma,
blur, re-encoding) close together and other images, look-alikes included, far apart. It
judges the pairs that the aligned distance cannot decide alone: those in the ratio test's
band (:func:`curate.duplicates.find_pairs`, step 5), where a strongly edited copy and a
look-alike of a crowd (catalogue photos of one car, ships on an empty sea) are equally far.

* network: seven 3x3 conv-BN-ReLU layers (16 to 128 channels, three of stride 2), global
  average pooling, a linear map to 128 dimensions, unit length (0.3 M parameters);
* input: each image resampled to 32x32, standardised to mean 0 and SD 1 (blind to
  brightness and contrast), grey images as three equal channels;
* trained by instance discrimination (NT-Xent) on CIFAR-10's 50,000 training images, two
  edited views of each per batch drawn from the real pairs' edit model with wider ranges
  (``python -m curate.bench.real_pairs embedding --edits strong --steps 3000``, which writes
  these weights: ``curate/bench/_copy_embedding.py``); no labels are used.

Measured on the labelled real CIFAR-10 pairs in docs/near-duplicates.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: The shipped weights (safetensors: loading runs no code).
WEIGHTS = Path(__file__).resolve().with_name("copy_embedding.safetensors")
SIDE = 32  # the network's input side
WIDTH, DIM = 16, 128


def block(i: int, o: int, s: int) -> torch.nn.Module:
    """One layer of the network: 3x3 convolution (stride ``s``), batch norm, ReLU."""
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


def network(width: int = WIDTH, dim: int = DIM) -> torch.nn.Module:
    """The architecture: (B, 3, 32, 32) standardised images -> (B, dim) unit vectors."""
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.f = nn.Sequential(block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1), block(2 * w, 4 * w, 2),
                                   block(4 * w, 4 * w, 1), block(4 * w, 8 * w, 2), block(8 * w, 8 * w, 1))
            self.head = nn.Linear(8 * w, dim)

        def forward(self, x):
            return F.normalize(self.head(self.f(x).mean((2, 3))), dim=1)

    return Net()


def standardise(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) on [0, 1] -> each image to mean 0 and SD 1 (a flat image to 0)."""
    m, s = x.mean((1, 2, 3), keepdim=True), x.std((1, 2, 3), keepdim=True).clamp_min(1 / 255)
    return (x - m) / s


def network_input(images, cache: dict) -> torch.Tensor:
    """(n, C, H, W) in [-1, 1], C = 1 or 3 -> (n, 3, 32, 32) on [0, 1] (``cache``: the
    resampling matrices by size, kept between calls)."""
    from curate.duplicates.descriptor import resampled

    t = torch.from_numpy(np.ascontiguousarray(resampled(images, SIDE, cache, np.float32)))
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def load(weights: Path | str = WEIGHTS, width: int = WIDTH) -> torch.nn.Module:
    """The network of ``width`` with ``weights`` (default: the shipped ones), in eval mode."""
    from safetensors.torch import load_file

    net = network(width)
    net.load_state_dict(load_file(str(weights)))
    return net.eval()


class CopyEmbedding:
    """Embeddings of images and of their mirror images, and the cosine of pairs.

    ``embed`` is batch-invariant (eval mode: no statistics across images), so an image's
    embedding does not depend on what it is embedded with.
    """

    def __init__(self, weights: Path | str = WEIGHTS):
        self.net = load(weights)
        self._resample: dict = {}

    def embed(self, images, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """images (n, C, H, W) in [-1, 1] -> float32 (n, 128) embeddings of the images and
        (n, 128) of their left-right mirror images."""
        e, m = [], []
        with torch.inference_mode():
            for s in range(0, len(images), chunk):
                x = standardise(network_input(images[s:s + chunk], self._resample))
                e.append(self.net(x).numpy())
                m.append(self.net(x.flip(3)).numpy())
        if not e:
            return np.zeros((0, DIM), np.float32), np.zeros((0, DIM), np.float32)
        return np.concatenate(e), np.concatenate(m)


def cosine(e: np.ndarray, em: np.ndarray, a, b) -> np.ndarray:
    """(P,) cosine of pairs (a_i, b_i) of embeddings e, em (n, dim): the better of b_i and
    its mirror image (a mirrored copy is a copy)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    return np.maximum((e[a] * e[b]).sum(1), (e[a] * em[b]).sum(1)).astype(np.float64)
