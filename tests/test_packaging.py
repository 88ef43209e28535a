"""The presets and the App plugin live once in git, at the top of the checkout (no
symlinks); a checkout reads them there, and a wheel (a non-editable install) carries
them as curate/_shipped/."""
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from curate import _package_data
from curate.commands.plugin import plugin_source
from curate.recipes import _config

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def test_no_symlinks():
    """Symlinks break on Windows and with core.symlinks=false."""
    links = [p for d in ("curate", "recipes", "plugins") for p in (ROOT / d).rglob("*") if p.is_symlink()]
    assert links == []
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:  # mode 120000: a symlink in the index, whatever the checkout made of it
        assert [line.split("\t", 1)[1] for line in out.stdout.splitlines() if line.startswith("120000 ")] == []


def test_a_checkout_reads_the_top_level_folders():
    assert _config.PRESETS_ROOT == ROOT / "recipes"
    assert _config.preset_dir("clean_digits") == ROOT / "recipes" / "clean_digits"
    assert plugin_source() == ROOT / "plugins" / "curate"
    with pytest.raises(ValueError, match="not shipped"):
        _package_data.shipped_path("tests")


def _wheel_names(wheel: Path) -> set[str]:
    return set(zipfile.ZipFile(wheel).namelist())


def _build_wheel(src: Path, dist: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = dist.glob("curate-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_ships_presets_and_plugin(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in BUILD_FILES:
        shutil.copy(ROOT / f, src / f)
    for d in ("curate", "recipes", "plugins"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    wheel = _build_wheel(src, tmp_path / "dist")
    names = _wheel_names(wheel)
    want = {f"curate/_shipped/recipes/{p.relative_to(ROOT / 'recipes')}" for p in (ROOT / "recipes").rglob("*.toml")}
    plugin = ROOT / "plugins" / "curate"  # every file of the plugin folder, its modules and fiftyone.yml
    plugin_files = {p.relative_to(plugin).as_posix() for p in plugin.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert {"__init__.py", "operators.py", "fiftyone.yml"} <= plugin_files
    want |= {f"curate/_shipped/plugins/curate/{n}" for n in plugin_files}
    want |= {"curate/bench/data/cifar10_pairs.csv", "curate/bench/data/README.md"}  # the labelled real pairs
    want.add("curate/duplicates/copy_embedding.safetensors")  # dedupe's copy embedding
    want.add("curate/duplicates/copy_verifier.safetensors")  # and its pair verifier
    assert len(want) > 10 and want <= names, sorted(want - names)
    # only inside the package: no top-level recipes/ or plugins/ in site-packages
    assert not [n for n in names if n.startswith(("recipes/", "plugins/"))]

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
    assert lines[1] == str(sorted(p.stem for p in (ROOT / "recipes" / "clean_digits").glob("*.toml")))
    assert lines[2] == str(target / "curate" / "_shipped" / "plugins" / "curate")

    # An sdist (what `python -m build` builds the wheel from) carries them as well.
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sdist")], cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with tarfile.open(tmp_path / "sdist" / out.stdout.split()[-1]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    assert want <= _wheel_names(_build_wheel(unpacked, tmp_path / "dist2"))
