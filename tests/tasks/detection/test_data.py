"""COCO reading: category mapping, crowds, empty images, SSD augmentation keeping boxes right, bad input."""

import json
import shutil

import pytest
import torch

from mobilenets.tasks.detection.data import CocoDataModule, load_coco
from mobilenets.tasks.detection.synthetic import CATEGORIES, write_coco
from mobilenets.tasks.data.images import BadRecordError


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"), train_images=30, val_images=10, image_size=96)


def _copy(coco_root, tmp_path):
    return shutil.copytree(coco_root, tmp_path / "coco")


def _edit(root, split, change):
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_synthetic_coco_is_coco(coco_root):
    coco = load_coco(coco_root / "annotations" / "instances_train2017.json")
    assert sorted(coco.cats) == [3, 7, 11, 42] and len(coco.imgs) == 30
    assert any(a["iscrowd"] for a in coco.anns.values())
    assert any(not coco.imgToAnns.get(i) for i in coco.imgs)  # some images hold no object


def test_category_mapping_crowds_and_empty_images(coco_root):
    data = CocoDataModule(str(coco_root), resolution=96, batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.category_ids == [3, 7, 11, 42] and data.class_names == [c["name"] for c in CATEGORIES]
    dataset = data.datasets["val"]
    coco = dataset.coco
    for index, image_id in enumerate(dataset.image_ids):
        sample = dataset[index]
        expected = [a for a in coco.imgToAnns.get(image_id, []) if not a["iscrowd"]]
        assert len(sample["target"]["labels"]) == len(expected)  # crowds are not targets; empty images stay
        assert [data.category_ids[label - 1] for label in sample["target"]["labels"].tolist()] == \
            [a["category_id"] for a in expected]
        if expected:
            x, y, w, h = expected[0]["bbox"]
            assert torch.allclose(sample["target"]["boxes"][0], torch.tensor([x, y, x + w, y + h]), atol=1e-3)
    batch = next(iter(data.val_dataloader()))
    assert isinstance(batch["image"], list) and len(batch["target"]) == 4


def test_ssd_augmentation_keeps_boxes_valid(coco_root):
    torch.manual_seed(0)
    data = CocoDataModule(str(coco_root), resolution=96, num_workers=0)
    data.setup("fit")
    for index in range(len(data.datasets["train"])):
        sample = data.datasets["train"][index]
        boxes, (height, width) = sample["target"]["boxes"], sample["image"].shape[-2:]
        assert len(boxes) == len(sample["target"]["labels"])
        if len(boxes):
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert boxes[:, 2].max() <= width + 1e-3 and boxes[:, 3].max() <= height + 1e-3


def test_degenerate_and_outside_boxes(coco_root, tmp_path):
    root = _copy(coco_root, tmp_path)
    first = json.loads((root / "annotations" / "instances_train2017.json").read_text())["annotations"][0]
    _edit(root, "train2017", lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10]))
    with pytest.raises(BadRecordError, match=rf"annotation id {first['id']} .*degenerate box \[5, 5, 0, 10\]"):
        CocoDataModule(str(root), num_workers=0).setup("fit")
    _edit(root, "train2017", lambda d: d["annotations"][0].update(bbox=[50, 50, 80, 10]))
    with pytest.raises(BadRecordError, match=rf"annotation id {first['id']} .*outside the 96x96 image"):
        CocoDataModule(str(root), num_workers=0).setup("fit")
    data = CocoDataModule(str(root), num_workers=0, skip_bad=True)
    data.setup("fit")
    assert len(data.skipped) == 1 and first["id"] not in data.coco["train2017"].anns


def test_missing_image_id_file_and_malformed_json(coco_root, tmp_path):
    root = _copy(coco_root, tmp_path)
    _edit(root, "val2017", lambda d: d["annotations"][0].update(image_id=999999))
    with pytest.raises(BadRecordError, match="refers to missing image id 999999"):
        CocoDataModule(str(root), num_workers=0).setup("fit")
    root2 = _copy(coco_root, tmp_path / "b")
    victim = sorted((root2 / "train2017").iterdir())[3]
    victim.unlink()
    expected = rf"{victim.name} \(image id \d+ in instances_train2017\.json\): image file not found"
    with pytest.raises(BadRecordError, match=expected):
        CocoDataModule(str(root2), num_workers=0).setup("fit")
    data = CocoDataModule(str(root2), num_workers=0, skip_bad=True)
    data.setup("fit")
    assert len(data.datasets["train"]) == 29
    (root2 / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(BadRecordError, match=r"instances_val2017\.json: malformed JSON"):
        CocoDataModule(str(root2), num_workers=0, skip_bad=True).setup("fit")
