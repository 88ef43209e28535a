"""Every benchmark of curate, measured as ratios against baselines in the same run.

* :mod:`curate.bench.tracker`: the batched tracker against plain forward passes and the
  paper-style per-image loop (``curate bench tracker``, ``curate bench suite``);
* :mod:`curate.bench.dedupe`: near-duplicate search with known answers on CIFAR-10 plus
  planted edited copies (``curate bench dedupe``).

The ``curate bench`` sub-commands (:mod:`curate.commands.bench`) only parse options and
call these modules.
"""
