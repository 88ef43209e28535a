"""The reproduction audit on tensors (no FiftyOne): which training images does a model
copy, how often, and how well does a risk score predict it?

* :mod:`~curate.reproduction.match`: generated images against the training set in
  memory-bounded chunks (nearest image, RMS distance, Carlini and Gu ratios, copy flags);
* :mod:`~curate.reproduction.counts`: per-image counts and rates with Wilson intervals;
* :mod:`~curate.reproduction.ceiling`: the split-half noise ceiling;
* :mod:`~curate.reproduction.calibrate`: isotonic p_reproduce, fitted on one half;
* :mod:`~curate.reproduction.evaluation`: a score against an audit, all of the above.

:func:`curate.brain.compute_reproductions` runs it on a FiftyOne collection.
"""
from curate.reproduction.calibrate import Calibration, check_calibration, fit_isotonic
from curate.reproduction.ceiling import halves, noise_ceiling, precision_at_k, score_on_halves
from curate.reproduction.counts import counts_per_image, rates, wilson_interval
from curate.reproduction.evaluation import ScoreEvaluation, evaluate
from curate.reproduction.match import CRITERIA, Matches, TrainingSet, exact_groups, match, nearest

__all__ = ["CRITERIA", "Calibration", "Matches", "ScoreEvaluation", "TrainingSet", "check_calibration",
           "counts_per_image", "evaluate", "exact_groups", "fit_isotonic", "halves", "match", "nearest",
           "noise_ceiling", "precision_at_k", "rates", "score_on_halves", "wilson_interval"]
