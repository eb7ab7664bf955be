"""Stanford Dogs and ImageFolder reading, the synthetic writer, and every kind of bad input."""

import hashlib
import logging
import shutil

import numpy as np
import pytest
import scipy.io
import torch

from mobilenets.tasks.classification.data import DogsDataModule, read_stanford_dogs, stanford_dogs_classes
from mobilenets.tasks.classification.synthetic import write_stanford_dogs
from mobilenets.tasks.data.images import BadRecordError, ImageDataset

SMALL = dict(num_classes=3, train_per_class=4, test_per_class=2)


@pytest.fixture(scope="module")
def dogs_root(tmp_path_factory):
    return write_stanford_dogs(tmp_path_factory.mktemp("dogs"), **SMALL)


def _copy(dogs_root, tmp_path):
    return shutil.copytree(dogs_root, tmp_path / "dogs")


def test_synthetic_layout_is_stanford_dogs(dogs_root):
    assert sorted(p.name for p in (dogs_root / "Images").iterdir()) == [
        "n02085621-Chihuahua", "n02085622-Japanese_spaniel", "n02085623-Dalmatian"]
    mat = scipy.io.loadmat(dogs_root / "lists" / "train_list.mat")
    assert mat["file_list"].shape == (12, 1) and mat["labels"].shape == (12, 1)
    assert mat["file_list"][0][0][0] == "n02085621-Chihuahua/n02085621_00000.jpg"  # MATLAB cell array of char
    assert mat["annotation_list"][0][0][0] == "n02085621-Chihuahua/n02085621_00000"
    assert sorted(set(mat["labels"].ravel())) == [1.0, 2.0, 3.0]
    annotation = (dogs_root / "Annotation" / "n02085621-Chihuahua" / "n02085621_00000").read_text()
    assert "<bndbox><xmin>" in annotation and "<name>Chihuahua</name>" in annotation
    assert len(scipy.io.loadmat(dogs_root / "lists" / "file_list.mat")["labels"]) == 18


def test_synthetic_is_deterministic(tmp_path):
    def digest(root):
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.jpg")))).hexdigest()

    a = write_stanford_dogs(tmp_path / "a", num_classes=2, train_per_class=2, test_per_class=1, seed=3)
    b = write_stanford_dogs(tmp_path / "b", num_classes=2, train_per_class=2, test_per_class=1, seed=3)
    c = write_stanford_dogs(tmp_path / "c", num_classes=2, train_per_class=2, test_per_class=1, seed=4)
    assert digest(a) == digest(b) != digest(c)


def test_synthetic_breed_choice(tmp_path):
    root = write_stanford_dogs(tmp_path / "d", train_per_class=1, test_per_class=1, breeds=["Pug", "Boxer"])
    assert stanford_dogs_classes(root) == ["Pug", "Boxer"]
    with pytest.raises(ValueError, match=r"unknown breeds \['Poodle'\]"):
        write_stanford_dogs(tmp_path / "e", breeds=["Poodle"])
    with pytest.raises(ValueError, match="num_classes must be in 1..10"):
        write_stanford_dogs(tmp_path / "f", num_classes=11)


def test_reads_lists_and_class_names(dogs_root):
    assert stanford_dogs_classes(dogs_root) == ["Chihuahua", "Japanese_spaniel", "Dalmatian"]
    train, skipped = read_stanford_dogs(dogs_root, "train", 3)
    test, _ = read_stanford_dogs(dogs_root, "test", 3)
    assert (len(train), len(test), skipped) == (12, 6, [])
    assert [r.label for r in train].count(0) == 4 and {r.label for r in test} == {0, 1, 2}  # 0-based
    assert train[0].source == "train_list.mat[0]"


def test_crop_to_box(dogs_root):
    records, _ = read_stanford_dogs(dogs_root, "train", 3, crop_to_box=True)
    x0, y0, x1, y1 = records[0].box
    sample = ImageDataset(records[:1])[0]
    assert sample["image"].shape == (3, y1 - y0, x1 - x0)
    assert sample["image"].dtype == torch.uint8 and sample["label"] == 0


def test_datamodule_splits_and_transforms(dogs_root):
    data = DogsDataModule(str(dogs_root), resolution=64, batch_size=4, num_workers=0, val_fraction=0.25, seed=1)
    data.setup("fit")
    assert data.class_names == ["Chihuahua", "Japanese_spaniel", "Dalmatian"] and data.num_classes == 3
    assert (len(data.datasets["train"]), len(data.datasets["val"]), len(data.datasets["test"])) == (9, 3, 6)
    val_files = {r.path for r in data.datasets["val"].records}
    assert not val_files & {r.path for r in data.datasets["train"].records}
    again = DogsDataModule(str(dogs_root), resolution=64, num_workers=0, val_fraction=0.25, seed=1)
    again.setup("fit")
    assert {r.path for r in again.datasets["val"].records} == val_files  # seeded, reproducible
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert next(iter(data.val_dataloader()))["image"].shape[-2:] == (64, 64)


def test_synthetic_flag_writes_into_an_empty_root(tmp_path):
    data = DogsDataModule(str(tmp_path / "new"), synthetic=True, synthetic_options=SMALL, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    assert data.num_classes == 3 and len(data.datasets["test"]) == 6


def test_image_folder_layouts(tmp_path, dogs_root):
    split_root = tmp_path / "split"
    for split, pattern in (("train", "*_0000[0-2].jpg"), ("val", "*_00003.jpg")):
        for image in (dogs_root / "Images").rglob(pattern):
            target = split_root / split / image.parent.name.split("-")[1] / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target)
    data = DogsDataModule(str(split_root), layout="imagefolder", resolution=32, num_workers=0)
    data.setup("fit")
    assert data.class_names == ["Chihuahua", "Dalmatian", "Japanese_spaniel"]
    assert (len(data.datasets["train"]), len(data.datasets["val"]), len(data.datasets["test"])) == (9, 3, 3)
    flat = DogsDataModule(str(split_root / "train"), layout="imagefolder", resolution=32, num_workers=0,
                          val_fraction=1 / 3)
    flat.setup("fit")
    assert (len(flat.datasets["train"]), len(flat.datasets["val"])) == (6, 3)


def test_missing_image_names_file_and_index(dogs_root, tmp_path):
    root = _copy(dogs_root, tmp_path)
    victim = root / "Images" / "n02085621-Chihuahua" / "n02085621_00002.jpg"
    victim.unlink()
    with pytest.raises(BadRecordError, match=r"n02085621_00002\.jpg \(train_list\.mat\[2\]\): image file not found"):
        read_stanford_dogs(root, "train", 3)
    records, skipped = read_stanford_dogs(root, "train", 3, skip_bad=True)
    assert len(records) == 11 and len(skipped) == 1


def test_corrupt_jpeg_names_file(dogs_root, tmp_path, caplog):
    root = _copy(dogs_root, tmp_path)
    victim = root / "Images" / "n02085622-Japanese_spaniel" / "n02085622_00001.jpg"
    victim.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    records, _ = read_stanford_dogs(root, "train", 3)
    dataset = ImageDataset(records)
    index = next(i for i, r in enumerate(records) if r.path == victim)
    with pytest.raises(BadRecordError, match=rf"n02085622_00001\.jpg \(train_list\.mat\[{index}\]\): unreadable image"):
        dataset[index]
    data = DogsDataModule(str(root), skip_bad=True, num_workers=0, val_fraction=0)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    assert len(data.skipped) == 1 and len(data.datasets["train"]) == 11
    assert "skipped 1 bad records" in caplog.text


def test_label_out_of_range(dogs_root, tmp_path):
    root = _copy(dogs_root, tmp_path)
    mat = scipy.io.loadmat(root / "lists" / "train_list.mat")
    mat["labels"][5, 0] = 121
    scipy.io.savemat(root / "lists" / "train_list.mat", {k: mat[k] for k in ("file_list", "annotation_list", "labels")})
    with pytest.raises(BadRecordError, match=r"\(train_list\.mat\[5\]\): label 121 outside 1\.\.3"):
        read_stanford_dogs(root, "train", 3)
    assert len(read_stanford_dogs(root, "train", 3, skip_bad=True)[0]) == 11


def test_mat_without_expected_keys(dogs_root, tmp_path):
    root = _copy(dogs_root, tmp_path)
    scipy.io.savemat(root / "lists" / "test_list.mat", {"files": np.zeros(3)})
    with pytest.raises(BadRecordError, match=r"test_list\.mat: missing keys \['file_list', 'annotation_list', 'labels'\]"):
        read_stanford_dogs(root, "test", 3)
    (root / "lists" / "file_list.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"file_list\.mat: Stanford Dogs list file not found"):
        DogsDataModule(str(root), num_workers=0).setup("fit")


def test_degenerate_box(dogs_root, tmp_path):
    root = _copy(dogs_root, tmp_path)
    annotation = root / "Annotation" / "n02085621-Chihuahua" / "n02085621_00001"
    text = annotation.read_text()
    start, end = text.index("<xmax>") + 6, text.index("</xmax>")
    annotation.write_text(text[:start] + "0" + text[end:])
    with pytest.raises(BadRecordError, match=r"n02085621_00001 \(train_list\.mat\[1\]\): degenerate box"):
        read_stanford_dogs(root, "train", 3, crop_to_box=True)


def test_bad_datamodule_arguments(tmp_path):
    with pytest.raises(ValueError, match="val_fraction must be in"):
        DogsDataModule(str(tmp_path), val_fraction=1.0)
    with pytest.raises(ValueError, match="resolution must be an integer >= 32"):
        DogsDataModule(str(tmp_path), resolution=8)
