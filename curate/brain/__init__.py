"""FiftyOne side of curate, in the style of :mod:`fiftyone.brain`.

* :func:`compute_score` stores any registered risk score (:mod:`curate.scores`) of every
  image as a brain run; :func:`compute_volume_growth` (the paper's) and
  :func:`compute_denoising_score` are the same with their settings spelled out;
  :func:`score_sharded` does it from every process of a ``torchrun`` job.
* :func:`flag_high_risk` tags the highest scores and saves a view.
* :func:`dedupe` finds near-duplicate groups among flagged images and the rest.
* :func:`export_clean` exports what is left.
* :func:`list_runs` lists the scoring runs of a dataset.
* :func:`compute_reproductions` audits which training images a model copies (a brain
  run); :func:`evaluate_score` says how well a score field predicts those copies.
"""
from curate.brain._engine import DatabaseUnavailableError, ScoreSummary
from curate.brain.near_duplicates import dedupe
from curate.brain.distributed import ShardSummary, score_sharded
from curate.brain.export import export_clean
from curate.brain.flag import flag_high_risk
from curate.brain.runs import list_runs
from curate.brain.reproductions import AuditSummary, compute_reproductions
from curate.brain.score import compute_denoising_score, compute_score, compute_volume_growth
from curate.brain.score_trust import evaluate_score

__all__ = ["compute_score", "compute_volume_growth", "compute_denoising_score", "score_sharded",
           "flag_high_risk", "dedupe", "export_clean", "list_runs", "ScoreSummary", "ShardSummary",
           "DatabaseUnavailableError", "compute_reproductions", "evaluate_score", "AuditSummary"]
