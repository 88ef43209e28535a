"""The score registry: settings are checked, every kind's cost is what it spends, the
docs/scores.md's table is generated from it, and equal tracker settings share one run."""
import re
from pathlib import Path

import pytest
import torch

import curate
from curate import scores
from curate.data.tensors import digits_images
from curate.models.exact import ExactScore

SCORES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "scores.md"


def test_params_are_checked_and_coerced():
    p = scores.Param("t", 0.01, "time", low=0.0, high=1.0, open_low=True)
    assert p.check(1) == 1.0 and isinstance(p.check(1), float)
    for bad in (0.0, 1.5, "0.1", True, float("nan")):
        with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
            p.check(bad)
    n = scores.Param("draws", 4, "draws", low=1)
    assert n.check(3.0) == 3 and isinstance(n.check(3.0), int)
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        n.check(2.5)
    c = scores.Param("method", "fd", "m", choices=("fd", "jvp"))
    with pytest.raises(ValueError, match="method must be one of 'fd', 'jvp'"):
        c.check("euler")


def test_resolve_fills_defaults_and_refuses_unknown_settings():
    kind = scores.get("denoising_score")
    assert kind.resolve({"t": 0.2}) == {"t": 0.2, "draws": 4}
    with pytest.raises(ValueError, match=r"takes no setting\(s\) \['steps'\]"):
        kind.resolve({"steps": 3})
    with pytest.raises(ValueError, match="unknown score 'nope'; registered scores: volume_growth"):
        scores.get("nope")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        scores.register(scores.ScoreKind(name="volume_growth", summary="", source="", params=(),
                                         scorer=lambda *a, **k: None, nfe=lambda d, p, m: 0))
    with pytest.raises(ValueError, match="common to every scorer"):
        scores.register(scores.ScoreKind(name="x_bad", summary="", source="", params=(scores.Param("seed", 0, ""),),
                                         scorer=lambda *a, **k: None, nfe=lambda d, p, m: 0))
    assert "x_bad" not in scores.names()


class _Counting:
    """A score model that counts the rows it evaluates (a JVP's rows count once)."""

    def __init__(self, inner):
        self.inner, self.rows = inner, 0

    def eps(self, x, t):
        self.rows += x.shape[0]
        return self.inner.eps(x, t)


@pytest.mark.parametrize("name", scores.names())
def test_each_kind_spends_the_network_evaluations_it_declares(name):
    """nfe(D, settings, model) equals the rows a counting model sees, per image (a model
    without a closed-form divergence, so divergences cost JVPs)."""
    images = digits_images(dtype=torch.float64)[:6]
    kind = scores.get(name)
    settings = {"steps": 3} if "steps" in kind.defaults() else {}
    model = _Counting(ExactScore(images[:4]))  # no closed-form divergence: divergences cost JVPs
    params = kind.resolve(settings)
    out = kind(model, images, **settings)
    assert out.values.shape == (6,) and out.values.dtype == torch.float64
    assert model.rows == kind.nfe(images[0].numel(), params, model) * 6


def test_the_docs_table_is_the_registry():
    text = SCORES_PAGE.read_text()
    m = re.search(r"<!-- scores-table[^>]*-->\n(.*?)<!-- /scores-table -->", text, flags=re.S)
    assert m, "docs/scores.md lost its scores table"
    assert m.group(1) == scores.markdown_table(), "regenerate with `curate scores --markdown`"


def test_equal_tracker_settings_share_one_run_and_values_match_the_tracker():
    from curate.evaluate import run_methods

    images = digits_images(dtype=torch.float64)[:5]
    model = _Counting(ExactScore(images[:3]))
    specs = {"lg": dict(steps=4, divergence="hutchinson"), "dv": dict(score="divergence", steps=4,
                                                                        divergence="hutchinson"),
             "gl": dict(score="generation_logp", steps=4, divergence="hutchinson")}
    out = run_methods(model, images, specs)
    rows_one_run = model.rows
    ref = curate.track_volume_growth(model.inner, images, steps=4, divergence="hutchinson")
    torch.testing.assert_close(out["lg"].scores, ref.log_growth, rtol=0, atol=0)
    torch.testing.assert_close(out["dv"].scores, ref.divergence_integral, rtol=0, atol=0)
    torch.testing.assert_close(out["gl"].scores, ref.generation_logp, rtol=0, atol=0)
    model.rows = 0
    run_methods(model, images, {"lg": specs["lg"]})
    assert model.rows == rows_one_run  # the three specs cost one tracker run
