"""The choices of a near-duplicate search in one light module (no numpy, no torch), so
the CLI and the benchmark's options offer them without importing the search itself."""

#: ``curate.brain.dedupe(method=...)``: the aligned descriptor distance, or the pixel RMS.
METHODS = ("descriptor", "pixel")
#: Largest distance of a duplicate pair per method: the descriptor's was chosen on planted
#: edits of CIFAR-10 (training images 40,000-49,999, edit seed 1); pixel 0.1 is a 5 % RMS
#: difference on the [-1, 1] scale.
DEFAULT_THRESHOLD = {"descriptor": 0.2, "pixel": 0.1}
#: Key search of the descriptor: exact chunked BLAS, or a scikit-learn NearestNeighbors algorithm.
INDEXES = ("exact", "ball_tree", "kd_tree", "brute")
