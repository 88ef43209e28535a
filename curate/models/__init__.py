"""Score models: the interface, the exact score, networks and adapters."""
from curate.models.base import ScoreModel, check_model, drift, eps, score
from curate.models.exact import ExactScore

__all__ = ["ScoreModel", "ExactScore", "check_model", "drift", "eps", "score"]
