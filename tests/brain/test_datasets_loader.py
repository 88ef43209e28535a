"""Datasets with the zoo cifar10 schema, and the loader's size/channel/failure policy."""
import pickle

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
        for p, row, lab, gt in zip(ds.values("filepath"), data, labels, ds.values("ground_truth.label")):
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
