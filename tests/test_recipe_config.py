"""The recipe config system: presets, typed overrides, dry run, resumable stages."""
from __future__ import annotations

import json
import tomllib

import pytest

from curate.recipes import _config
from curate.recipes._config import ConfigError, RunDir, apply_overrides, load_preset, start, to_toml

BASE = """
seed = 0
name = "small"
lr = 1e-3
flips = true
sizes = [1, 2]

[train]
steps = 100
preset = "tiny"

[train.ema]
decay = 0.999
"""


@pytest.fixture
def presets(tmp_path, monkeypatch):
    d = tmp_path / "presets" / "demo"
    d.mkdir(parents=True)
    (d / "small.toml").write_text(BASE)
    (d / "big.toml").write_text('base = "small"\nname = "big"\n[train]\nsteps = 5000\n')
    (d / "loop.toml").write_text('base = "loop"\n')
    (d / "broken.toml").write_text("seed = = 1\n")
    monkeypatch.setenv("CURATE_RECIPES_DIR", str(tmp_path / "presets"))
    return d


def test_named_preset_and_base_chain(presets):
    small = load_preset("demo", "small")
    assert small == tomllib.loads(BASE)
    big = load_preset("demo", "big")
    assert big["name"] == "big" and big["train"]["steps"] == 5000
    assert big["train"]["preset"] == "tiny" and big["train"]["ema"]["decay"] == 0.999  # inherited
    assert load_preset("demo", str(presets / "big.toml")) == big
    assert _config.available_presets("demo") == ["big", "broken", "loop", "small"]


def test_preset_errors(presets):
    with pytest.raises(ConfigError, match="available"):
        load_preset("demo", "nope")
    with pytest.raises(ConfigError, match="loops"):
        load_preset("demo", "loop")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset("demo", "broken")


def test_typed_overrides(presets):
    cfg = load_preset("demo", "small")
    out = apply_overrides(cfg, ["seed=7", "lr=0.5", "flips=false", "name=x=y", "sizes=[3, 4, 5]",
                                "train.steps=12", "train.ema.decay=0.9"])
    assert out["seed"] == 7 and isinstance(out["seed"], int)
    assert out["lr"] == 0.5 and out["flips"] is False and out["name"] == "x=y"
    assert out["sizes"] == [3, 4, 5] and out["train"]["steps"] == 12 and out["train"]["ema"]["decay"] == 0.9
    assert cfg["seed"] == 0  # the input is not modified
    assert apply_overrides(cfg, ["lr=2"])["lr"] == 2.0 and isinstance(apply_overrides(cfg, ["lr=2"])["lr"], float)
    for bad, msg in [("seed=1.5", "expected an int"), ("flips=maybe", "expected a bool"),
                     ("nokey=1", "unknown key"), ("train=3", "cannot override"),
                     ("seed.x=1", "not a table"), ("seed", "key=value"), ("sizes=3", "expected a list")]:
        with pytest.raises(ConfigError, match=msg):
            apply_overrides(cfg, [bad])


def test_to_toml_roundtrip(presets):
    cfg = apply_overrides(load_preset("demo", "big"), ["name=quote \"me\""])
    assert tomllib.loads(to_toml(cfg)) == cfg


def test_dry_run_prints_resolved_config(presets, tmp_path, capsys):
    assert start("demo", "d", "small", ["--config", "big", "--set", "seed=3", "--dry-run",
                                        "--out", str(tmp_path / "run")]) is None
    text = capsys.readouterr().out
    printed = tomllib.loads(text)
    assert printed["seed"] == 3 and printed["train"]["steps"] == 5000
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    with pytest.raises(SystemExit, match="unknown key"):
        start("demo", "d", "small", ["--set", "what=1", "--dry-run"])


def test_stages_resume(presets, tmp_path):
    calls = []
    cfg = load_preset("demo", "small")
    run = RunDir(tmp_path / "run", cfg, log=lambda s: None)
    assert json.loads(run.file("config.json").read_text()) == cfg
    assert tomllib.loads(run.file("config.toml").read_text()) == cfg

    def work():
        calls.append(1)
        run.file("artefact.txt").write_text("x")
        return {"value": len(calls)}

    def crash():
        raise RuntimeError("killed")

    assert run.stage("a", work) == {"value": 1}
    with pytest.raises(RuntimeError):
        run.stage("b", crash)
    assert not run.done("b")  # an interrupted stage leaves no marker

    run2 = RunDir(tmp_path / "run", cfg, log=lambda s: None)  # a rerun, same config
    assert run2.stage("a", work) == {"value": 1} and len(calls) == 1  # skipped
    assert run2.stage("b", work) == {"value": 2}
    with pytest.raises(ConfigError, match="different config .*differs in: seed"):
        RunDir(tmp_path / "run", apply_overrides(cfg, ["seed=1"]))
    # a speed-only setting resumes, keeping the finished stages
    said = []
    run_t = RunDir(tmp_path / "run", dict(cfg, threads=int(cfg.get("threads", 1)) + 1), log=said.append)
    assert run_t.done("a") and run_t.done("b") and "do not change results" in said[0]
    RunDir(tmp_path / "run", cfg, log=lambda s: None)
    run3 = RunDir(tmp_path / "run", apply_overrides(cfg, ["seed=1"]), fresh=True, log=lambda s: None)
    assert run3.stage("a", work) == {"value": 3}
    assert not list(run3.path.glob(".*.tmp"))  # no temporary files left behind


RECIPES = ("overfit_check", "memorized_vs_not", "clean_digits", "clean_cifar")


def _dry_run(recipe: str, preset: str, capsys) -> str:
    """What ``python -m curate.recipes.<recipe> --config <preset> --dry-run`` prints."""
    import importlib

    assert importlib.import_module(f"curate.recipes.{recipe}").main(["--config", preset, "--dry-run"]) is None
    return capsys.readouterr().out


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_shipped_preset_resolves(recipe, capsys):
    """Each preset a recipe ships passes the recipe's own checks and prints a config that
    reads back as TOML (a broken preset fails here, not an hour into a run)."""
    names = _config.available_presets(recipe)
    assert names
    for name in names:
        text = _dry_run(recipe, name, capsys)
        assert text.startswith(f"# resolved config of {recipe} (preset {name})\n")
        assert "seed" in tomllib.loads(text)


def _resolved(recipe: str, preset: str, capsys) -> dict:
    return tomllib.loads(_dry_run(recipe, preset, capsys))


def test_the_planted_cifar_run_is_the_evaluation_run_plus_planting(capsys):
    """cifar_cpu_planted reports on cifar_cpu's evaluation images with every setting chosen
    on cifar_cpu_tune: only the planting differs."""
    planted = _resolved("memorized_vs_not", "cifar_cpu_planted", capsys)
    evaluation = _resolved("memorized_vs_not", "cifar_cpu", capsys)
    assert (planted["data"]["n_planted"], planted["data"]["copies"]) == (4, 8)
    for d in (planted, evaluation):
        d["data"].pop("n_planted"), d["data"].pop("copies")
    assert planted == evaluation
    assert evaluation["data"]["subset_seed"] == 1
