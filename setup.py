"""Build step pyproject.toml cannot declare: copy the top-level presets and App plugin
(curate/_package_data.py names them) into the built package as curate/_shipped/, so a
wheel carries them while git keeps one copy of each and no symlinks."""
import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
_DATA = runpy.run_path(str(ROOT / "curate" / "_package_data.py"))


class BuildPyWithShippedFiles(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads them from the checkout
            return
        for folder in _DATA["SHIPPED_FOLDERS"]:
            src = ROOT / folder
            dest = Path(self.build_lib) / "curate" / _DATA["WHEEL_FOLDER"] / folder
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
