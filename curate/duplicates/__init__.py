"""Near-duplicate search that survives everyday edits (numpy/torch/scikit-learn only).

* :mod:`curate.duplicates.descriptor`: per-image keys (a tiny GIST) and canvases;
* :mod:`curate.duplicates.align`: the aligned distance of two images (best zoom, shift, mirror);
* :mod:`curate.duplicates.search`: nearest keys as candidates, verified by the aligned distance;
* :mod:`curate.duplicates.verify`: the aligned distance of candidate pairs, in batches;
* :mod:`curate.duplicates.edits`: the edits a duplicate goes through (benchmark and tests);
* the benchmark with known answers lives in :mod:`curate.bench.dedupe` (``curate bench dedupe``).

:func:`curate.brain.dedupe` runs this on a FiftyOne collection. The names below are
imported on first use, so that ``curate --help`` (which reads the benchmark's options)
does not pay for torch.
"""
from __future__ import annotations

__all__ = ["Aligner", "Descriptor", "DescriptorSpec", "PairResult", "PairVerifier", "find_pairs"]


def __getattr__(name: str):
    if name == "Aligner":
        from curate.duplicates.align import Aligner

        return Aligner
    if name in ("Descriptor", "DescriptorSpec"):
        from curate.duplicates import descriptor

        return getattr(descriptor, name)
    if name == "PairVerifier":
        from curate.duplicates.verify import PairVerifier

        return PairVerifier
    if name in ("PairResult", "find_pairs"):
        from curate.duplicates import search

        return getattr(search, name)
    raise AttributeError(f"module 'curate.duplicates' has no attribute {name!r}")
