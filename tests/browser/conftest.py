"""Browser tests: a throwaway mongod (as tests/brain) before fiftyone is imported."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_curate_test_mongod", Path(__file__).resolve().parents[1] / "brain" / "_mongod.py")
_mongod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mongod)
_mongod.start()
