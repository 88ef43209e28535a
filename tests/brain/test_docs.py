"""README.md and every page of docs/: each Python block runs on its own (a fresh
namespace, a fresh folder) against the test mongod, and every document the repository
names is in it. The quickstart's "your own image folder" and "your model" are made here
first: ``my_images/`` (real digits as PNGs) and ``my-model/`` (a curate checkpoint)."""
import contextlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_extractor_finds_each_block():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]


def _user_files(folder: Path) -> None:
    """What the quickstart assumes the user has: a folder of images and a trained model."""
    import torch
    from PIL import Image

    from curate.data.datasets import digits_uint8
    from curate.models.checkpoint import save_checkpoint
    from curate.models.unet import build_unet

    images, _ = digits_uint8()
    (folder / "my_images").mkdir()
    for i in range(40):
        Image.fromarray(images[i]).save(folder / "my_images" / f"img_{i:03d}.png")
    torch.manual_seed(0)
    net = build_unet("tiny", image_size=8, channels=1)
    save_checkpoint(folder / "my-model", net, ema=net, step=0)


BLOCKS = [(page, i, code) for page in PAGES for i, code in enumerate(python_blocks(page.read_text()))]


def test_the_readme_has_the_quickstart():
    readme = [code for page, _, code in BLOCKS if page.name == "README.md"]
    assert len(readme) == 1 and all(f"cb.{f}(" in readme[0] for f in
                                    ("dedupe", "compute_score", "flag_high_risk", "export_clean", "compute_reproductions"))


@pytest.mark.slow
@pytest.mark.parametrize("page,i,code", BLOCKS, ids=[f"{p.relative_to(ROOT)}#{i + 1}" for p, i, _ in BLOCKS])
def test_every_python_block_runs_on_its_own(fo, tmp_path, monkeypatch, page, i, code):
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path)
    with _one_block_at_a_time():
        names = set(fo.list_datasets())
        try:
            exec(compile(code, f"{page.relative_to(ROOT)} python block {i + 1}", "exec"), {"__name__": "__doc__"})
        finally:  # the block's datasets (named as a user would: "my-images", and what derives from them)
            mine = {m for m in re.findall(r"[\"']([\w-]{4,})[\"']", code)}
            for name in set(fo.list_datasets()) - names:
                if any(name.startswith(m) for m in mine):
                    fo.delete_dataset(name)


@contextlib.contextmanager
def _one_block_at_a_time():
    """The test workers share one database (the controller's mongod) and blocks name their
    datasets as a user would ("my-images" in two pages): one block runs at a time, and each
    deletes only its own datasets, never another worker's."""
    import fcntl
    import hashlib
    import os
    import tempfile

    key = hashlib.sha1(os.environ.get("FIFTYONE_DATABASE_URI", "").encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"curate-doc-blocks-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    files = [ROOT / f for f in out.stdout.split()]
    return [f for f in files if f.suffix in (".md", ".py", ".toml", ".yml", ".txt", ".cfg") and f.is_file()]


#: ``*.md`` names that are not documents of the repository: what a recipe run writes into
#: its run folder, and FiftyOne's panel method ``panel.md``.
NOT_DOCUMENTS = {"report.md", "panel.md"}


def test_every_document_named_is_in_the_repository():
    """Markdown links resolve, and every ``*.md`` a file names exists in the repository."""
    files = _tracked_text_files()
    have = {f.name for f in files} | {f.relative_to(ROOT).as_posix() for f in files}
    missing = []
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".md":
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
                if "://" not in target and not (f.parent / target).exists():
                    missing.append(f"{f.relative_to(ROOT)}: link {target}")
        for name in re.findall(r"[\w./-]*\b[\w-]+\.md\b", text):
            base = name.rsplit("/", 1)[-1]
            if base not in have and name not in have and base not in NOT_DOCUMENTS:
                missing.append(f"{f.relative_to(ROOT)}: names {name}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    fences = [i for i, line in enumerate(lines) if line.startswith("```bash")]
    first = lines[fences[0] + 1:fences[0] + 3]
    assert first == ["bash .ci/setup && .venv/bin/python -m curate.recipes.clean_digits",
                     ".venv/bin/python -m pytest -q -n 2"]
