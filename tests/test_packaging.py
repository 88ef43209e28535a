"""A wheel (a non-editable install) carries the recipe presets and the App plugin."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_presets_and_plugin(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    for d in ("curate", "recipes", "plugins"):  # symlinks stay links, as in a checkout
        shutil.copytree(ROOT / d, src / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("curate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"curate/_shipped/recipes/{p.relative_to(ROOT / 'recipes')}" for p in (ROOT / "recipes").rglob("*.toml")}
    want |= {f"curate/_shipped/plugins/curate/{n}" for n in ("__init__.py", "fiftyone.yml")}
    assert len(want) > 10 and want <= names, sorted(want - names)

    # Installed from the wheel alone, curate finds them there.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    code = ("import curate; from curate.recipes import _config; from curate.commands.plugin import plugin_source;"
            "print(curate.__file__); print(_config.available_presets('clean_digits')); print(plugin_source())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(target))
    assert lines[1] == "['default', 'smoke']"
    assert lines[2] == str(target / "curate" / "_shipped" / "plugins" / "curate")
