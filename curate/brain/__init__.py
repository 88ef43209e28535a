"""FiftyOne side of curate, in the style of :mod:`fiftyone.brain`.

* :func:`compute_volume_growth` scores a collection and registers a brain run;
  :func:`score_sharded` does it from every process of a ``torchrun`` job.
* :func:`compute_denoising_score` stores minus the denoising loss at small t, the
  same way (the strongest detector of duplicated training images we measured).
* :func:`flag_high_risk` tags the highest scores and saves a view.
* :func:`dedupe` finds near-duplicate groups among flagged images and the rest.
* :func:`export_clean` exports what is left.
"""
from curate.brain.dedupe import dedupe
from curate.brain.denoising import compute_denoising_score
from curate.brain.distributed import ShardSummary, score_sharded
from curate.brain.export import export_clean
from curate.brain.flag import flag_high_risk
from curate.brain.runs import list_runs
from curate.brain.volume_growth import DatabaseUnavailableError, ScoreSummary, compute_volume_growth

__all__ = ["compute_volume_growth", "compute_denoising_score", "ScoreSummary", "DatabaseUnavailableError", "flag_high_risk", "dedupe", "export_clean",
           "list_runs", "score_sharded", "ShardSummary"]
