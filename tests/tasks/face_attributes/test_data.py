"""CelebA-format parsing (with CelebA's real irregular spacing), the CSV layout, subsets, bad input."""

import shutil

import numpy as np
import pytest

from mobilenets.tasks.face_attributes.data import (
    CelebADataModule,
    read_attribute_csv,
    read_celeba_attributes,
    read_celeba_partition,
)
from mobilenets.tasks.face_attributes.synthetic import ATTRIBUTES, write_celeba
from mobilenets.tasks.data.images import BadRecordError

# The first lines of the real list_attr_celeba.txt, spacing as published (two spaces before a positive value,
# one before a negative, a trailing space after the names), cut to 5 attributes, with one unknown (0).
CELEBA_SNIPPET = """3
5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald 
000001.jpg -1  1  1 -1 -1
000002.jpg -1 -1 -1  1 -1
000003.jpg -1 -1 -1 -1  0
"""


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    return write_celeba(tmp_path_factory.mktemp("celeba"), num_images=20)


def test_parser_on_the_real_format(tmp_path):
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(CELEBA_SNIPPET)
    names, records, skipped = read_celeba_attributes(path)
    assert names == ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald"]
    assert list(records) == ["000001.jpg", "000002.jpg", "000003.jpg"] and skipped == []
    line, labels = records["000001.jpg"]
    assert line == 3 and labels.tolist() == [0, 1, 1, 0, 0]
    assert records["000003.jpg"][1].tolist() == [0, 0, 0, 0, -1]  # CelebA's 0 = unknown


def test_wrong_value_count_and_bad_value(tmp_path):
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(CELEBA_SNIPPET.replace("000002.jpg -1 -1 -1  1 -1", "000002.jpg -1 -1  1 -1"))
    with pytest.raises(BadRecordError, match=r"list_attr_celeba\.txt:4: 000002\.jpg: expected 5 values, got 4"):
        read_celeba_attributes(path)
    names, records, skipped = read_celeba_attributes(path, skip_bad=True)
    assert len(records) == 2 and len(skipped) == 1
    path.write_text(CELEBA_SNIPPET.replace("000003.jpg -1 -1 -1 -1  0", "000003.jpg -1 -1 -1 -1  2"))
    with pytest.raises(BadRecordError, match=r":5: 000003\.jpg: value '2' is not -1, 0 or 1"):
        read_celeba_attributes(path)
    path.write_text(CELEBA_SNIPPET.replace("3\n", "4\n", 1))
    with pytest.raises(BadRecordError, match="declares 4 images but lists 3"):
        read_celeba_attributes(path)


def test_partition_parser(tmp_path):
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    assert read_celeba_partition(path) == [(1, "000001.jpg", "train"), (2, "000002.jpg", "val"),
                                           (3, "000003.jpg", "test")]
    path.write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(BadRecordError, match=r"list_eval_partition\.txt:2: expected '<file> <0\|1\|2>'"):
        read_celeba_partition(path)


def test_synthetic_celeba_through_the_datamodule(celeba_root):
    data = CelebADataModule(str(celeba_root), resolution=64, batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.attribute_names == ATTRIBUTES and data.num_attributes == 10
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["label"].shape == (4, 10)
    assert set(batch["label"].unique().tolist()) <= {0, 1}
    positives, negatives = data.label_counts("train")
    assert (positives + negatives == 14).all()


def test_torchvision_placement_subset_and_boxes(celeba_root, tmp_path):
    shutil.copytree(celeba_root, tmp_path / "root" / "celeba")
    data = CelebADataModule(str(tmp_path / "root"), attributes=["Smiling", "Eyeglasses"], crop_to_box=True,
                            resolution=32, num_workers=0)
    data.setup("fit")
    assert data.attribute_names == ["Smiling", "Eyeglasses"]
    record = data.datasets["train"].records[0]
    full = read_celeba_attributes(celeba_root / "list_attr_celeba.txt")[1][record.path.name][1]
    assert record.label.tolist() == [full[ATTRIBUTES.index("Smiling")], full[ATTRIBUTES.index("Eyeglasses")]]
    assert record.box is not None and record.box[2] > record.box[0]
    with pytest.raises(ValueError, match=r"attributes \['Bald'\] not in the data"):
        CelebADataModule(str(celeba_root), attributes=["Bald"], num_workers=0).setup("fit")


def test_partition_file_missing_from_attribute_list(celeba_root, tmp_path):
    root = shutil.copytree(celeba_root, tmp_path / "c")
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join(["19"] + lines[1:6] + lines[7:]) + "\n")  # drop 000005.jpg
    with pytest.raises(BadRecordError, match=r"list_eval_partition\.txt:5: 000005\.jpg is not in list_attr_celeba\.txt"):
        CelebADataModule(str(root), num_workers=0).setup("fit")
    data = CelebADataModule(str(root), num_workers=0, skip_bad=True)
    data.setup("fit")
    assert len(data.skipped) == 1 and len(data.datasets["train"]) == 13


def test_missing_and_corrupt_images(celeba_root, tmp_path):
    root = shutil.copytree(celeba_root, tmp_path / "c")
    (root / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(BadRecordError, match=r"000002\.jpg \(list_eval_partition\.txt:2\): image file not found"):
        CelebADataModule(str(root), num_workers=0).setup("fit")
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"broken")
    data = CelebADataModule(str(root), num_workers=0, skip_bad=True)
    data.setup("fit")
    assert len(data.skipped) == 2 and len(data.datasets["train"]) == 12


def test_csv_layout(tmp_path, celeba_root):
    root = tmp_path / "own"
    (root / "images").mkdir(parents=True)
    for name in ("000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"):
        shutil.copy(celeba_root / "img_align_celeba" / name, root / "images" / name)
    (root / "train.csv").write_text("file,hat,smile\nimages/000001.jpg,1,0\nimages/000002.jpg,-1,\n"
                                    "images/000003.jpg,0,1\n")
    (root / "test.csv").write_text("file,hat,smile\nimages/000004.jpg,1,1\n")
    names, records, _ = read_attribute_csv(root / "train.csv", root)
    assert names == ["hat", "smile"]
    assert [r.label.tolist() for r in records] == [[1, 0], [0, -1], [0, 1]]  # empty cell = unknown
    data = CelebADataModule(str(root), layout="csv", num_workers=0, val_fraction=0.34, resolution=32)
    data.setup("fit")
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    (root / "train.csv").write_text("file,hat,smile\nimages/000001.jpg,1\n")
    with pytest.raises(BadRecordError, match=r"train\.csv:2: expected 3 fields, got 2"):
        read_attribute_csv(root / "train.csv", root)
    (root / "train.csv").write_text("file,hat,smile\nimages/000001.jpg,1,yes\n")
    with pytest.raises(BadRecordError, match=r"train\.csv:2: images/000001\.jpg: value 'yes'"):
        read_attribute_csv(root / "train.csv", root)


def test_synthetic_attributes_correlate_as_real_ones_do(tmp_path):
    root = write_celeba(tmp_path / "s", num_images=200, seed=1)
    _, records, _ = read_celeba_attributes(root / "list_attr_celeba.txt")
    labels = np.stack([labels for _, labels in records.values()])
    male, beard = labels[:, ATTRIBUTES.index("Male")] == 1, labels[:, ATTRIBUTES.index("No_Beard")] == 0
    assert beard.any() and not (beard & ~male).any()  # beards only on men
    assert not (labels[:, ATTRIBUTES.index("Black_Hair")] & labels[:, ATTRIBUTES.index("Blond_Hair")]).any()
