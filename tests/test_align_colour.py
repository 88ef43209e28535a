"""The aligned distance's colour options (curate.duplicates.align.Aligner(colour=...)):
"rgb" standardises each channel on its own, so a per-channel affine colour map leaves
the distance near 0 (all but the contrast floor's share: a pure per-channel offset gives
exactly 0), while the default "ycc" sees the gains."""
import numpy as np
import pytest

from curate.duplicates import Descriptor
from curate.duplicates import edits as E
from curate.duplicates.align import Aligner
from curate.duplicates.verify import PairVerifier


def _distances(x: np.ndarray, colour: str) -> np.ndarray:
    _, canvases = Descriptor().describe(x)
    pairs = np.array([(0, i) for i in range(1, len(x))])
    return PairVerifier(Aligner(colour=colour), canvases, True, refine_below=np.inf).distances(pairs)


def test_rgb_is_blind_to_a_per_channel_affine_map():
    img = E.natural_like(2, 32, seed=4).astype(np.float64) / 127.5 - 1  # (2, 32, 32, 3)
    x = img[0].transpose(2, 0, 1)
    # strong, different gains and offsets per channel, kept inside [-1, 1] (no clipping)
    mapped = x * np.array([0.7, 0.9, 0.6])[:, None, None] + np.array([0.2, -0.05, 0.3])[:, None, None]
    other = img[1].transpose(2, 0, 1)
    stack = np.stack([x, mapped, other]).astype(np.float32)
    rgb, ycc = _distances(stack, "rgb"), _distances(stack, "ycc")
    assert rgb[0] < 0.01 and rgb[0] < 0.1 * ycc[0]
    assert rgb[1] > 0.3  # a different image stays far
    shifted = x + np.array([0.1, -0.2, 0.15])[:, None, None]  # offsets only: no floor involved
    assert _distances(np.stack([x, shifted]).astype(np.float32), "rgb")[0] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="colour"):
        Aligner(colour="hsv")
