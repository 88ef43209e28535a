"""Datasets with the zoo cifar10 schema, and the loader's size/channel/failure policy."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curate.data.datasets import digits_split, digits_uint8, load_cifar10, read_cifar_batch
from curate.data.loader import iter_batches, load_images
from curate.data.tensors import to_model_range


def test_digits_schema_and_pixels(fo, digits_ds):
    ds = digits_ds
    assert ds.default_classes == [str(i) for i in range(10)]
    assert ds.count_sample_tags() == {"train": 40, "test": 40}
    assert isinstance(ds.get_field_schema()["ground_truth"], fo.EmbeddedDocumentField)
    assert ds.get_field_schema()["ground_truth"].document_type is fo.Classification
    images, labels = digits_uint8()
    split = digits_split(len(images))
    for tag in ("train", "test"):
        view = ds.match_tags(tag)
        idx = split[tag][:40]
        paths = view.values("filepath")
        got = np.stack([np.asarray(Image.open(p)) for p in paths])
        assert all(p.endswith(".png") for p in paths)
        np.testing.assert_array_equal(got, images[idx])
        assert view.values("ground_truth.label") == [str(int(t)) for t in labels[idx]]
        # The loader gives exactly the model-range tensors of those pixels.
        ids, x, failed = load_images(view, batch_size=7, num_workers=2)
        assert not failed and ids == view.values("id")
        torch.testing.assert_close(x, to_model_range(images[idx]).unsqueeze(1), rtol=0, atol=0)


def test_load_digits_is_called_like_the_zoo(fo, tmp_path, monkeypatch):
    """Split first, max_samples per split, the zoo's default name; the former folder-first
    call still works for one release, with a warning."""
    from curate.data.datasets import load_digits

    monkeypatch.setattr(fo.config, "default_dataset_dir", str(tmp_path / "fo"))
    images, _ = digits_uint8()
    split = digits_split(len(images))
    try:
        ds = load_digits("train", max_samples=7, overwrite=True, progress=False)
        assert ds.name == "digits-train-7" and ds.count_sample_tags() == {"train": 7}
        assert all(p.startswith(str(tmp_path / "fo" / "digits-train-7")) for p in ds.values("filepath"))
        got = np.stack([np.asarray(Image.open(p)) for p in ds.values("filepath")])
        np.testing.assert_array_equal(got, images[split["train"][:7]])
        both = load_digits(max_samples=5, overwrite=True, progress=False)
        assert both.name == "digits-5" and both.count_sample_tags() == {"train": 5, "test": 5}
        with pytest.warns(DeprecationWarning, match="images_dir="):
            old = load_digits(tmp_path / "old", dataset_name="digits-old-t", max_samples=3, overwrite=True,
                              progress=False)
        assert old.count() == 6 and all(p.startswith(str(tmp_path / "old")) for p in old.values("filepath"))
        with pytest.raises(ValueError, match="split must be"):
            load_digits(["train", "val"])
    finally:
        for name in ("digits-train-7", "digits-5", "digits-old-t"):
            if fo.dataset_exists(name):
                fo.delete_dataset(name)


def _fake_cifar(folder, rng):
    folder.mkdir(parents=True)
    batches = {}
    for name, n in [("data_batch_%d" % i, 3) for i in range(1, 6)] + [("test_batch", 4)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:  # the layout of the real python batches
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f, protocol=2)
        batches[name] = (data, labels)
    return batches


def test_cifar10_from_local_folder(fo, tmp_path):
    rng = np.random.default_rng(0)
    batches = _fake_cifar(tmp_path / "cifar-10-batches-py", rng)
    ds = load_cifar10(tmp_path, split="test", dataset_name="cifar-test-t", overwrite=True, progress=False)
    try:
        data, labels = batches["test_batch"]
        assert ds.count() == 4 and ds.count_sample_tags() == {"test": 4}
        assert ds.default_classes[0] == "airplane" and len(ds.default_classes) == 10
        ds_in_order = ds.sort_by("cifar_index")  # the official order of the batch
        assert ds_in_order.values("cifar_index") == [0, 1, 2, 3]
        for p, row, lab, gt in zip(ds_in_order.values("filepath"), data, labels,
                                   ds_in_order.values("ground_truth.label")):
            rgb = np.asarray(Image.open(p))
            assert rgb.shape == (32, 32, 3)
            # channel-planar row -> HWC: red plane first
            np.testing.assert_array_equal(rgb[..., 0].reshape(-1), row[:1024])
            np.testing.assert_array_equal(rgb[..., 2].reshape(-1), row[2048:])
            assert gt == ds.default_classes[lab]
        full = load_cifar10(tmp_path, dataset_name="cifar-all-t", overwrite=True, progress=False)
        assert full.count_sample_tags() == {"train": 15, "test": 4}
        fo.delete_dataset("cifar-all-t")
    finally:
        fo.delete_dataset("cifar-test-t")


def test_cifar10_missing_folder_and_hostile_pickle(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path, "test", dataset_name="cifar-missing-t", progress=False)

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_cifar_batch(tmp_path / "evil")
    assert not (tmp_path / "pwned").exists()


def test_loader_failures_size_and_channels(fo, tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    big = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    paths = {}
    for name, arr in [("gray", gray), ("rgb", rgb), ("big", big)]:
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(arr).save(paths[name])
    paths["broken"] = str(tmp_path / "broken.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    ds = fo.Dataset("loader-policy-t", overwrite=True)
    try:
        ds.add_samples([fo.Sample(filepath=paths[k]) for k in ("gray", "rgb", "broken", "big")])
        ids = ds.values("id")
        # Policy from the first image: 8x8, one channel.
        batches = list(iter_batches(ds, batch_size=3, num_workers=2))
        assert [b.ids for b in batches] == [[ids[0], ids[1]], []]
        assert set(batches[0].failed) == {ids[2]}
        assert batches[0].failed[ids[2]].startswith("UnidentifiedImageError")
        assert "10x12" in batches[1].failed[ids[3]] and "resize=True" in batches[1].failed[ids[3]]
        x = batches[0].images
        assert x.shape == (2, 1, 8, 8) and x.dtype == torch.float32
        want_l = np.asarray(Image.fromarray(rgb).convert("L"))
        torch.testing.assert_close(x[1, 0], to_model_range(want_l), rtol=0, atol=0)
        # Explicit RGB with resizing: every readable image comes through at 8x8x3.
        ids2, x2, failed2 = load_images(ds, channels=3, size=(8, 8), resize=True, num_workers=0)
        assert ids2 == [ids[0], ids[1], ids[3]] and set(failed2) == {ids[2]}
        assert x2.shape == (3, 3, 8, 8)
        want_big = np.asarray(Image.fromarray(big).convert("RGB").resize((8, 8), Image.BICUBIC))
        torch.testing.assert_close(x2[2], to_model_range(want_big).permute(2, 0, 1), rtol=0, atol=0)
        assert x2.min() >= -1 and x2.max() <= 1
    finally:
        fo.delete_dataset("loader-policy-t")


def _write_tree(root, rng, classes=("cat", "dog", "ship"), per=2, splits=("train", "test"), size=32):
    """PNG files root/<split>/<class>/<k>.png; returns {(split, class, k): pixels}."""
    out = {}
    for s in splits:
        for c in classes:
            (root / s / c).mkdir(parents=True, exist_ok=True) if s else (root / c).mkdir(parents=True, exist_ok=True)
            for k in range(per):
                px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(px).save((root / s / c if s else root / c) / f"{k}.png")
                out[(s, c, k)] = px
    return out


def test_image_tree_through_fiftyones_importer(fo, tmp_path):
    from curate.data.datasets import load_image_tree

    files = _write_tree(tmp_path / "tree", np.random.default_rng(3))
    ds = load_image_tree(tmp_path / "tree", dataset_name="tree-t", overwrite=True)
    try:
        assert ds.count() == 12 and ds.count_sample_tags() == {"train": 6, "test": 6}
        assert ds.default_classes == ["cat", "dog", "ship"]
        for path, tags, label in zip(*ds.values(["filepath", "tags", "ground_truth.label"])):
            p = Path(path)
            assert (tags, label) == ([p.parent.parent.name], p.parent.name)
            np.testing.assert_array_equal(np.asarray(Image.open(p)),
                                          files[(p.parent.parent.name, p.parent.name, int(p.stem))])
        only = load_image_tree(tmp_path / "tree", "test", dataset_name="tree-test-t", overwrite=True)
        assert only.count_sample_tags() == {"test": 6}
        fo.delete_dataset("tree-test-t")
    finally:
        fo.delete_dataset("tree-t")
    # A tree without split folders: classes at the top, no tags.
    _write_tree(tmp_path / "flat", np.random.default_rng(4), splits=("",), per=1)
    flat = load_image_tree(tmp_path / "flat", dataset_name="flat-t", overwrite=True)
    try:
        assert flat.count() == 3 and flat.count_sample_tags() == {}
        assert sorted(flat.values("ground_truth.label")) == ["cat", "dog", "ship"]
    finally:
        fo.delete_dataset("flat-t")
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_image_tree(tmp_path / "nowhere")


def _fake_cifar_tree(root, rng):
    """A CIFAR-like JPEG-free tree: PNGs under train/<class>/ with an order.csv whose
    official indices differ from the sorted file order. Returns {index: (class, pixels)}."""
    from curate.data.cifar import CLASSES

    truth = {}
    rows = ["split,index,label,path"]
    for index, (cls, k) in enumerate([(7, 0), (2, 0), (7, 1), (0, 0), (2, 1)]):
        px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        rel = f"train/{CLASSES[cls]}/{k:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(root / rel)
        rows.append(f"train,{index},{cls},{rel}")
        truth[index] = (CLASSES[cls], px)
    (root / "order.csv").write_text("\n".join(rows) + "\n")
    return truth


def test_cifar10_from_an_image_tree_with_official_order(fo, tmp_path):
    from curate.data import cifar

    truth = _fake_cifar_tree(tmp_path / "c10", np.random.default_rng(5))
    # In place, through the importer: every file, indexed by order.csv.
    ds = load_cifar10(tmp_path / "c10", split="train", dataset_name="c10-tree-t", overwrite=True, progress=False)
    try:
        assert ds.count() == 5
        for path, idx, label in zip(*ds.values(["filepath", "cifar_index", "ground_truth.label"])):
            assert label == truth[idx][0]
            np.testing.assert_array_equal(np.asarray(Image.open(path)), truth[idx][1])
    finally:
        fo.delete_dataset("c10-tree-t")
    # The first 3 by official index, at 16x16 (PIL box filter), written as PNGs then imported.
    ds = load_cifar10(tmp_path / "c10", split="train", dataset_name="c10-small-t", overwrite=True, max_samples=3,
                      image_size=16, images_dir=tmp_path / "png", progress=False)
    try:
        assert sorted(ds.values("cifar_index")) == [0, 1, 2]
        for path, idx in zip(*ds.values(["filepath", "cifar_index"])):
            want = np.asarray(Image.fromarray(truth[idx][1]).resize((16, 16), Image.BOX))
            np.testing.assert_array_equal(np.asarray(Image.open(path)), want)
    finally:
        fo.delete_dataset("c10-small-t")
    # Tensors for the tensor recipes: the same pixels, only the asked-for files decoded.
    x, labels, index = cifar.load_tensor(tmp_path / "c10", "train", [4, 0])
    assert index.tolist() == [4, 0] and labels.tolist() == [2, 7] and x.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), truth[4][1])


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"


@pytest.mark.skipif(not (SHARED / "order.csv").is_file(), reason="needs ../shared/data/cifar10 (the real CIFAR-10 tree)")
def test_real_cifar10_tree_subset(fo, tmp_path):
    import csv

    ds = load_cifar10(SHARED, split="test", dataset_name="c10-real-t", overwrite=True, max_samples=20,
                      images_dir=tmp_path / "png", progress=False)
    try:
        with open(SHARED / "order.csv", newline="") as f:
            rows = {int(r["index"]): r for r in csv.DictReader(f) if r["split"] == "test"}
        assert ds.count() == 20 and sorted(ds.values("cifar_index")) == list(range(20))
        for path, idx, label in zip(*ds.values(["filepath", "cifar_index", "ground_truth.label"])):
            assert label == Path(rows[idx]["path"]).parent.name
            np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                          np.asarray(Image.open(SHARED / rows[idx]["path"]).convert("RGB")))
    finally:
        fo.delete_dataset("c10-real-t")
