"""The public surface, pinned: every exported name, and that each is what it says.

A name added or removed here is an API change; the lists are written out by hand so a
diff shows it."""
from __future__ import annotations

import inspect
import subprocess
import sys
import types

import pytest

import curate

CORE = {  # name -> "class" | "function"
    "CheckpointError": "class", "DiffusersUNetAdapter": "class", "EpsNetAdapter": "class",
    "ExactScore": "class", "Memorization": "class", "NonFiniteError": "class",
    "PickleRefusedError": "class", "VPSDE": "class", "VolumeGrowth": "class",
    "build_unet": "function", "find_memorized": "function", "load_checkpoint": "function",
    "load_model": "function", "nearest_neighbors": "function", "sample": "function",
    "save_checkpoint": "function", "track_volume_growth": "function", "train": "function",
}
BRAIN = {
    "compute_score": "function", "compute_volume_growth": "function", "compute_denoising_score": "function",
    "score_sharded": "function", "flag_high_risk": "function", "dedupe": "function",
    "export_clean": "function", "list_runs": "function", "ScoreSummary": "class", "ShardSummary": "class",
    "DatabaseUnavailableError": "class", "compute_reproductions": "function", "evaluate_score": "function",
    "AuditSummary": "class",
}
SCORES = {
    "Param": "class", "Scored": "class", "ScoreKind": "class", "get": "function", "kinds": "function",
    "names": "function", "register": "function", "unregister": "function", "table": "function",
    "markdown_table": "function", "DEFAULT_KIND": "constant", "resolve_kind": "function", "field_of": "function",
}
DATA = {
    "digits_images": "function", "to_model_range": "function", "from_model_range": "function",
    "load_digits": "function", "load_cifar10": "function", "load_image_tree": "function",
}
SUBMODULES = {"brain", "data", "evaluate", "models", "plots", "scores", "sde"}


def _module(name):
    import importlib

    return importlib.import_module(name)


@pytest.mark.parametrize("module, expected", [("curate", CORE), ("curate.brain", BRAIN),
                                              ("curate.scores", SCORES), ("curate.data", DATA)])
def test_exports_are_pinned_and_are_what_they_say(module, expected):
    mod = _module(module)
    names = set(mod.__all__) - {"__version__"}
    assert names == set(expected), (f"{module}.__all__ changed: added {sorted(names - set(expected))}, "
                                    f"removed {sorted(set(expected) - names)}")
    assert len(mod.__all__) == len(set(mod.__all__)), "a name exported twice"
    for name, kind in expected.items():
        obj = getattr(mod, name)
        assert not isinstance(obj, types.ModuleType), f"{module}.{name} is a module"
        if kind == "constant":  # a registered kind's name
            assert obj in mod.names(), f"{module}.{name} = {obj!r} is no registered kind"
            continue
        if kind == "class":
            assert inspect.isclass(obj), f"{module}.{name} should be a class, is {type(obj)}"
        else:
            assert inspect.isfunction(obj), f"{module}.{name} should be a function, is {type(obj)}"
        # what it says: the object's own name, defined inside curate
        assert obj.__name__ == name, f"{module}.{name} is really {obj.__name__}"
        assert obj.__module__.startswith("curate."), f"{module}.{name} comes from {obj.__module__}"
        assert (obj.__doc__ or "").strip(), f"{module}.{name} has no docstring"
    assert set(dir(mod)) >= set(expected)


def test_brain_functions_live_only_in_curate_brain():
    for name in BRAIN:
        assert name not in curate.__all__
        with pytest.raises(AttributeError):
            getattr(curate, name)


def test_submodules_are_reachable_without_an_import():
    assert SUBMODULES <= set(dir(curate))
    for name in SUBMODULES:
        assert isinstance(getattr(curate, name), types.ModuleType)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        curate.nope  # noqa: B018


# train/sample share names with nothing importable (curate.training, curate.sampling), and
# stay functions whatever was imported first.
ORDERS = [
    "import curate; t, s = curate.train, curate.sample",
    "import curate.sampling, curate.training; import curate; t, s = curate.train, curate.sample",
    "import curate; s = curate.sample; import curate.training, curate.sampling; t = curate.train",
    "from curate import sample as s, train as t; import curate.training",
    "import curate.brain, curate.scores, curate.recipes.clean.loop; import curate; t, s = curate.train, curate.sample",
]


@pytest.mark.parametrize("code", ORDERS)
def test_train_and_sample_are_functions_in_any_import_order(code):
    check = (code + "; import inspect, curate;"
             " assert inspect.isfunction(t) and inspect.isfunction(s), (t, s);"
             " assert curate.train is t and curate.sample is s, 'shadowed later';"
             " assert t.__name__ == 'train' and s.__name__ == 'sample'")
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_curate_brain_dedupe_is_only_the_function():
    """The module behind it is curate.brain.near_duplicates: ``curate.brain.dedupe`` names one thing."""
    import curate.brain

    assert inspect.isfunction(curate.brain.dedupe)
    import importlib.util

    assert importlib.util.find_spec("curate.brain.dedupe") is None
