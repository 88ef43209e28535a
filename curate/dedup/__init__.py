"""Near-duplicate search that survives everyday edits (numpy/torch/scikit-learn only).

* :mod:`curate.dedup.descriptor`: per-image keys (a tiny GIST) and canvases;
* :mod:`curate.dedup.align`: the aligned distance of two images (best zoom, shift, mirror);
* :mod:`curate.dedup.search`: nearest keys as candidates, verified by the aligned distance;
* :mod:`curate.dedup.edits`: the edits a duplicate goes through (benchmark and tests).

:func:`curate.brain.dedupe` runs this on a FiftyOne collection.
"""
from curate.dedup.align import Aligner
from curate.dedup.descriptor import Descriptor, DescriptorSpec
from curate.dedup.search import PairResult, find_pairs

__all__ = ["Aligner", "Descriptor", "DescriptorSpec", "PairResult", "find_pairs"]
