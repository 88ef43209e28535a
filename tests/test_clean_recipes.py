"""The clean-and-retrain recipes end to end on their smoke presets, against a real
throwaway mongod; the report's numbers are checked against the FiftyOne tags, the
exported files and an independent nearest-neighbour computation."""
from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "brain"))
import _mongod  # noqa: E402

_mongod.start()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from curate.recipes import _clean, clean_cifar, clean_digits  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------- small pieces ---

def test_random_flag_probability_is_exact():
    """P(a group of c copies is hit by k random flags of n) = 1 - C(n-c, k) / C(n, k)."""
    for n, k, c in [(50, 5, 3), (1686, 300, 32), (1686, 64, 32), (10, 8, 3), (10, 0, 2)]:
        want = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert _clean.random_flag_hit_probability(n, k, c) == pytest.approx(want, abs=1e-12)


def test_bad_settings_are_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit, match="clean.remove must be"):
        clean_digits.main(["--config", "smoke", "--set", "clean.remove=all", "--out", str(out)])
    with pytest.raises(SystemExit, match="data.copies >= 2"):
        clean_digits.main(["--config", "smoke", "--set", "data.copies=1", "--out", str(out)])
    assert not out.exists()


def test_dry_run_resolves_cifar_flags(capsys):
    assert clean_cifar.main(["--config", "smoke", "--cifar-root", "/some/where", "--download", "--dry-run"]) is None
    text = capsys.readouterr().out
    import tomllib

    cfg = tomllib.loads(text.split("\n", 1)[1])
    assert cfg["data"]["root"] == "/some/where" and cfg["data"]["download"] is True
    assert cfg["model"]["preset"] == "tiny" and cfg["data"]["n_images"] == 60  # smoke over its base "subset"


# ------------------------------------------------------------------ checks ---

def _independent_memorization(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    """Carlini and Gu counts from torch.cdist over the unique reference images."""
    uniq = torch.unique(reference.flatten(1).double(), dim=0)
    d = torch.cdist(samples.flatten(1).double(), uniq).sort(1).values
    carlini = d[:, 0] < 0.5 * d[:, :50].mean(1)
    gu = d[:, 0] / d[:, 1] < 1 / 3
    return {"carlini": int(carlini.sum()), "gu": int(gu.sum())}


def _check_run(out: Path, result: dict, *, n_source: int, n_planted: int, copies: int):
    import fiftyone as fo

    from curate.data.loader import load_images

    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == result["rows"]
    ds = fo.load_dataset(result["dataset_name"])
    train = ds.match_tags("train")
    n_train = n_source + n_planted * (copies - 1)
    assert train.count() == n_train == result["clean"]["n_train"]
    groups = [g for g in train.values("planted_group") if g is not None]
    assert sorted(set(groups)) == list(range(n_planted)) and len(groups) == n_planted * copies

    # What the report says was removed is what the tags say and what the export holds.
    rows = {r["model"]: r for r in result["rows"]}
    excl = result["clean"]["exclude_tags"]
    removed = train.match_tags(excl).count()
    exported = sorted(p for p in (out / "export").rglob("*.png"))
    assert rows["cleaned"]["removed"] == removed == result["clean"]["n_removed"]
    assert rows["cleaned"]["training_images"] == len(exported) == n_train - removed
    assert train.match_tags("high_risk").count() == min(result["config"]["clean"]["top_k"], n_train)
    # The control removed the same number, and trained on the rest.
    assert train.match_tags("control_removed").count() == removed == rows["control"]["removed"]
    assert rows["control"]["training_images"] == n_train - removed
    assert rows["baseline"]["training_images"] == n_train and rows["baseline"]["removed"] == 0
    # Each model's checkpoint saw the number of images the table says.
    for arm in _clean.ARMS:
        cfg = json.loads((out / "models" / arm / "config.json").read_text())
        assert cfg["train"]["n_images"] == rows[arm]["training_images"], arm

    # Memorized counts agree with an independent nearest-neighbour computation.
    _, reference, failed = load_images(train, num_workers=0)
    assert not failed
    for arm in _clean.ARMS:
        samples = load_file(str(out / f"samples_{arm}.safetensors"))["samples"]
        assert samples.shape[0] == result["config"]["memorization"]["samples"]
        want = _independent_memorization(samples, reference)
        for crit in _clean.CRITERIA:
            assert rows[arm][crit] == want[crit], (arm, crit)
            v = result["verdict"][crit]
            assert v[arm] == rows[arm][crit]
        assert rows[arm]["carlini_planted"] <= rows[arm]["carlini"]
    for crit in _clean.CRITERIA:
        v = result["verdict"][crit]
        assert v["pass"] == (v["cleaned"] <= v["baseline"] / 2 and v["cleaned"] < v["control"])

    report = (out / "report.md").read_text()
    for arm in _clean.ARMS:
        assert f"| {_clean.ARM_LABEL[arm]} | {rows[arm]['training_images']} | {rows[arm]['removed']} " \
               f"| {rows[arm]['carlini']} |" in report
    if n_planted:
        assert f"{n_planted} training images were planted {copies} times each" in report
    for f in ("memorized_counts.png", "samples_baseline.png", "samples_cleaned.png", "samples_control.png",
              "score_highest.png"):
        assert (out / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    return ds


# ----------------------------------------------------------------- recipes ---

@pytest.mark.slow
def test_clean_digits_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "cd"
    # Flag everything so dedupe must find both planted groups: exactly their extra
    # copies go (plus any duplicate pairs the real digits hold at this threshold).
    argv = ["--config", "smoke", "--set", "clean.top_k=1000", "--set", "clean.dedupe_threshold=0.0",
            "--out", str(out)]
    result = clean_digits.main(argv)
    text = capsys.readouterr().out
    assert f"report: {(out / 'report.md').resolve()}" in text
    ds = _check_run(out, result, n_source=200, n_planted=2, copies=8)
    train = ds.match_tags("train")
    # Dedupe at distance 0 groups exact copies only: the planted groups and the digits'
    # own exact duplicates; one member of each group stays.
    from curate.memorization import duplicate_groups
    from curate.data.loader import load_images

    ids, images, _ = load_images(train, num_workers=0)
    group, first = duplicate_groups(images)
    assert result["clean"]["n_removed"] == len(ids) - first.numel()
    assert result["clean"]["n_groups"] == int((torch.bincount(group) > 1).sum())
    sa = result["score_analysis"]
    assert sa["planted_groups_flagged"] == 2 and sa["planted_samples_removed_by_cleaning"] == 14
    # A rerun resumes: every stage is skipped and the answer is the same.
    again = clean_digits.main(argv)
    text = capsys.readouterr().out
    assert "] running" not in text
    assert text.count("done before, skipped") == 11
    assert again["rows"] == result["rows"]


def _write_cifar(root: Path, per_batch: int = 16) -> np.ndarray:
    """A small cifar-10-batches-py folder in the real format (protocol-2 pickles of
    dicts with bytes keys; data uint8 (n, 3072) as 1024 R, 1024 G, 1024 B values)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        # Smooth images (a random colour gradient) so they look like pictures, not noise.
        yy, xx = np.mgrid[0:32, 0:32] / 31.0
        imgs = []
        for _ in range(per_batch):
            a, b, c = rng.uniform(0, 255, (3, 3))
            chans = [np.clip(a[j] * (1 - xx) + b[j] * yy + c[j] * xx * yy / 2, 0, 255) for j in range(3)]
            imgs.append(np.concatenate([ch.reshape(-1) for ch in chans]))
        data = np.stack(imgs).astype(np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}, f, protocol=2)
        if name != "test_batch":
            all_data.append(data)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    return np.concatenate(all_data)


@pytest.mark.slow
def test_clean_cifar_smoke_end_to_end(tmp_path, capsys):
    data = _write_cifar(tmp_path / "cifar")
    out = tmp_path / "cc"
    result = clean_cifar.main(["--config", "smoke", "--cifar-root", str(tmp_path / "cifar"), "--out", str(out)])
    assert f"report: {(out / 'report.md').resolve()}" in capsys.readouterr().out
    ds = _check_run(out, result, n_source=60, n_planted=2, copies=6)
    # The smoke preset drops every flagged image and the duplicates of flagged ones.
    assert result["clean"]["exclude_tags"] == ["duplicate", "high_risk"]
    # The dataset's first image is row 0 of data_batch_1, channel-planar -> HWC.
    from PIL import Image

    first = ds.match_tags("train").sort_by("cifar_index").first()
    assert first.cifar_index == 0
    want = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(np.asarray(Image.open(first.filepath)), want)
    assert set(ds.default_classes) == set(CLASSES)
    # The export is a class-folder tree of the kept images.
    assert {p.parent.name for p in (out / "export").rglob("*.png")} <= set(CLASSES)


def test_clean_cifar_without_data_says_how_to_get_it(tmp_path):
    with pytest.raises(SystemExit, match="--cifar-root"):
        clean_cifar.main(["--config", "smoke", "--cifar-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
