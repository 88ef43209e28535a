"""Every Python snippet in README.md runs, in order, in one namespace, in a fresh folder,
against the test mongod: the README cannot drift from the code again."""
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_extractor_finds_each_block():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]


@pytest.mark.slow
def test_every_readme_snippet_runs(fo, tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3, "README should show the tracker, the scores and the FiftyOne API"
    monkeypatch.chdir(tmp_path)
    names = set(fo.list_datasets())
    ns: dict = {"__name__": "__readme__"}
    try:
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
            except Exception as e:  # say which block broke
                raise AssertionError(f"README python block {i + 1} failed: {type(e).__name__}: {e}\n{code}") from e
    finally:
        for name in set(fo.list_datasets()) - names:
            fo.delete_dataset(name)
    assert os.getcwd() == str(tmp_path)
