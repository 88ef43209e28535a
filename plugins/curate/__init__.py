"""The curate FiftyOne plugin: forms that call :mod:`curate.brain`. Its operators are in
:mod:`.operators`, its panels in :mod:`.panels`, the form helpers they share in :mod:`._forms`;
nothing is computed in the plugin.
"""
from .operators import ComputeReproductions, ComputeScore, Dedupe, ExportClean, FlagHighRisk
from .panels import ScoreHistogram, ScoreVsCopies


def register(p):
    p.register(ComputeScore)
    p.register(FlagHighRisk)
    p.register(Dedupe)
    p.register(ExportClean)
    p.register(ComputeReproductions)
    p.register(ScoreHistogram)
    p.register(ScoreVsCopies)
