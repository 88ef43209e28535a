"""Untrusted files and names: pickles that would run code, export paths that escape
their folder, names that are not identifiers, an export folder that exists. Each is
refused before anything happens: no marker file, nothing written, nothing changed."""
import json
import os
import pickle
import shutil

import pytest
import torch


class Evil:
    """Unpickling this runs ``touch MARKER`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(folder, marker):
    """The same payload as a raw pickle and in torch.save's zip format, under the
    names checkpoints use."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = pickle.dumps({"conv.weight": Evil(marker)}, protocol=2)
    paths = []
    for name in ("model.pt", "model.pth", "model.ckpt", "model.bin", "model.pkl"):
        (folder / name).write_bytes(raw)
        paths.append(folder / name)
    torch.save({"state_dict": Evil(marker)}, folder / "zipped.pt")
    paths.append(folder / "zipped.pt")
    return paths


def test_pickled_checkpoints_never_execute(tmp_path):
    from curate.models.checkpoint import CheckpointError, load_model, pickle_to_safetensors, save_checkpoint
    from curate.models.unet import build_unet

    marker = tmp_path / "PWNED"
    files = _evil_files(tmp_path / "evil", marker)
    # Loading any of them, as a file or as a folder, or converting them.
    for f in files:
        with pytest.raises(CheckpointError, match="pickle|refus"):
            load_model(f, device="cpu")
        with pytest.raises(CheckpointError, match="refused"):
            pickle_to_safetensors(f, tmp_path / "converted.safetensors")
    with pytest.raises(CheckpointError, match="pickle files"):
        load_model(tmp_path / "evil", device="cpu")
    # A real checkpoint folder whose weights were swapped for the pickle.
    ckpt = save_checkpoint(tmp_path / "ckpt", build_unet("tiny", image_size=8, channels=1))
    for name in ("model.safetensors", "ema.safetensors"):
        if (ckpt / name).exists():
            shutil.copy(files[0], ckpt / name)
    with pytest.raises(CheckpointError):
        load_model(ckpt, device="cpu")
    # A diffusers folder holding only a pickled .bin.
    d = tmp_path / "diffusers"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
    shutil.copy(files[0], d / "diffusion_pytorch_model.bin")
    with pytest.raises((CheckpointError, ImportError)):
        load_model(d, device="cpu")
    assert not marker.exists()
    assert not (tmp_path / "converted.safetensors").exists()
    # The payload is live: plain pickle.load would have run it (the test can fail).
    pickle.loads(files[0].read_bytes())
    assert marker.exists()


def test_pickled_cifar_batch_never_executes(tmp_path):
    from curate.data.datasets import load_cifar10, read_cifar_batch

    marker = tmp_path / "PWNED"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=2)
    for name in ["test_batch", "batches.meta"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        read_cifar_batch(folder / "test_batch")
    with pytest.raises(pickle.UnpicklingError):
        load_cifar10(tmp_path, split="test", dataset_name="evil-cifar", progress=False)
    assert not marker.exists()


def test_cli_refuses_pickled_model_cleanly(digits_ds, tmp_path):
    from curate.cli import main

    marker = tmp_path / "PWNED"
    evil = _evil_files(tmp_path / "evil", marker)[0]
    schema = sorted(digits_ds.get_field_schema())
    with pytest.raises(SystemExit, match="error: .*pickle"):
        main(["score", "--dataset", digits_ds.name, "--model", str(evil), "--no-progress"])
    assert not marker.exists()
    digits_ds.reload()
    assert sorted(digits_ds.get_field_schema()) == schema and digits_ds.list_brain_runs() == []


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else None


@pytest.mark.parametrize("label", ["../escaped", "../../etc", "/tmp/abs", "a/b", "..", ".", "", "C:evil",
                                   " padded"])
def test_export_labels_that_escape_the_folder_are_refused(digits_ds, tmp_path, label):
    from curate.brain import export_clean

    ds = digits_ds
    s = ds.first()
    s.ground_truth.label = label
    s.save()
    out = tmp_path / "deep" / "export"
    with pytest.raises(ValueError, match="escape the export folder"):
        export_clean(ds, out)
    assert not out.exists() and _tree(tmp_path / "deep") is None
    assert not (tmp_path / "escaped").exists()


def test_export_folder_symlink_existing_or_holding_media(digits_ds, tmp_path):
    from curate.brain import export_clean

    ds = digits_ds
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.txt").write_text("do not delete")
    link = tmp_path / "link"
    link.symlink_to(keep, target_is_directory=True)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="symbolic link"):
            export_clean(ds, link, overwrite=overwrite)
    # An existing, non-empty folder (or a file) is refused without overwrite.
    with pytest.raises(FileExistsError, match="not empty"):
        export_clean(ds, keep)
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(FileExistsError):
        export_clean(ds, file)
    assert (keep / "thesis.txt").read_text() == "do not delete" and file.read_text() == "x"
    # The folder that holds the dataset's own images, even with overwrite=True.
    media = os.path.dirname(os.path.dirname(ds.first().filepath))
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="dataset's own images"):
        export_clean(ds, media, overwrite=True)
    assert _tree(tmp_path) == before
    # A fresh folder works and holds exactly the samples.
    n = export_clean(ds, tmp_path / "out")
    assert n == 40 and len([p for p in (tmp_path / "out").rglob("*.png")]) == 40


def test_tag_and_field_names_that_are_not_identifiers(digits_ds, train_model):
    from curate.brain import compute_volume_growth, dedupe, flag_high_risk

    ds = digits_ds
    compute_volume_growth(ds, train_model, progress=False)
    ds.reload()
    tags_before = ds.count_sample_tags()
    schema_before = sorted(ds.get_field_schema())
    for bad in ("$where", "a.b", "", "a b", "-x", "1st", "x/y", "tag\x00"):
        with pytest.raises(ValueError, match="tag|view_name"):
            flag_high_risk(ds, top_k=3, tag=bad)
        with pytest.raises(ValueError, match="tag"):
            dedupe(ds, tag=bad, query_tag=None)
    with pytest.raises(ValueError, match="view_name"):
        flag_high_risk(ds, top_k=3, view_name="../x")
    for bad in ("a.b", "$set", "filepath", "_x", "ground_truth"):
        with pytest.raises(ValueError, match="group_field"):
            dedupe(ds, group_field=bad, query_tag=None)
    with pytest.raises(ValueError, match="not a number field"):
        flag_high_risk(ds, "ground_truth", top_k=3)
    ds.reload()
    assert ds.count_sample_tags() == tags_before and sorted(ds.get_field_schema()) == schema_before
    assert ds.list_saved_views() == [] and ds.distinct("ground_truth.label")  # labels intact
