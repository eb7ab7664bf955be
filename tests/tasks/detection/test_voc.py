"""Pascal VOC: the published annotation format (a real VOC2007 record, torchvision's own VOC parser as the
reference), the devkit layout, difficult objects, bad XML, and training + COCOeval through the CLI."""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from helpers import logged_metrics
from torchvision.datasets import VOCDetection

from mobilenets.cli import main
from mobilenets.tasks.detection import VOCDataModule, write_voc
from mobilenets.tasks.detection.voc import VOC_CLASSES, read_voc, read_voc_xml
from mobilenets.tasks.data.images import BadRecordError

# VOC2007's Annotations/000001.xml as the devkit ships it (tabs and all).
VOC2007_000001 = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000001.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t\t<flickrid>341012865</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>Fried Camels</flickrid>
\t\t<name>Jinky the Fruit Bat</name>
\t</owner>
\t<size>
\t\t<width>353</width>
\t\t<height>500</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>dog</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>48</xmin>
\t\t\t<ymin>240</ymin>
\t\t\t<xmax>195</xmax>
\t\t\t<ymax>371</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>8</xmin>
\t\t\t<ymin>12</ymin>
\t\t\t<xmax>352</xmax>
\t\t\t<ymax>498</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def _torchvision_objects(path: Path) -> list[dict]:
    parsed = VOCDetection.parse_voc_xml(ElementTree.parse(path).getroot())["annotation"]
    return parsed["object"]


def test_a_published_voc2007_record_read_as_torchvision_reads_it(tmp_path):
    path = tmp_path / "000001.xml"
    path.write_text(VOC2007_000001)
    record = read_voc_xml(path)
    assert (record["filename"], record["width"], record["height"]) == ("000001.jpg", 353, 500)
    reference = _torchvision_objects(path)
    assert [o["name"] for o in record["objects"]] == [o["name"] for o in reference] == ["dog", "person"]
    for ours, theirs in zip(record["objects"], reference):
        box = [float(theirs["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        # 1-based pixel corners -> 0-based continuous xywh
        assert ours["bbox"] == [box[0] - 1, box[1] - 1, box[2] - box[0] + 1, box[3] - box[1] + 1]
        assert ours["difficult"] == (theirs["difficult"] == "1")
    assert record["objects"][0]["bbox"] == [47, 239, 148, 132]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_voc(tmp_path_factory.mktemp("data") / "VOCdevkit", train_images=12, test_images=6, image_size=96)


def test_synthetic_layout_is_the_devkits(voc_root):
    """torchvision's VOCDetection (which expects <root>/VOCdevkit/VOC2007) reads the same images and objects."""
    reference = VOCDetection(str(voc_root.parent), year="2007", image_set="trainval", download=False)
    coco, skipped = read_voc(voc_root, ["VOC2007/trainval"], ("box", "disc", "ring", "triangle"))
    assert not skipped and len(reference) == len(coco.imgs) == 12
    for index, image_id in enumerate(sorted(coco.imgs)):
        image, target = reference[index]
        assert image.size == (96, 96)
        objects = target["annotation"]["object"] if "object" in target["annotation"] else []
        annotations = coco.imgToAnns[image_id]
        assert [o["name"] for o in objects] == [coco.cats[a["category_id"]]["name"] for a in annotations]
        assert [o["difficult"] == "1" for o in objects] == [bool(a["iscrowd"]) for a in annotations]


def test_difficult_objects_are_ignored_not_targets(voc_root):
    data = VOCDataModule(str(voc_root), num_workers=0, batch_size=2)
    data.setup("fit")
    coco = data.coco_for("val")
    difficult = [a for a in data.coco["train"].anns.values() if a["iscrowd"]]
    assert difficult, "the synthetic writer marks one object in twenty difficult"
    dataset = data.datasets["train"]
    image_id = difficult[0]["image_id"]
    sample = dataset[dataset.image_ids.index(image_id)]
    assert len(sample["target"]["labels"]) == sum(not a["iscrowd"] for a in data.coco["train"].imgToAnns[image_id])
    assert data.class_names == ["box", "disc", "ring", "triangle"] and data.category_ids == [1, 2, 3, 4]
    assert len(coco.imgs) == 6


def test_voc_classes_by_default_and_from_the_config(tmp_path):
    root = tmp_path / "VOCdevkit"
    (root / "VOC2007" / "Annotations").mkdir(parents=True)
    (root / "VOC2007" / "ImageSets" / "Main").mkdir(parents=True)
    (root / "VOC2007" / "Annotations" / "000001.xml").write_text(VOC2007_000001)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    coco, _ = read_voc(root, ["VOC2007/test"], VOC_CLASSES)
    assert [coco.cats[a["category_id"]]["name"] for a in coco.anns.values()] == ["dog", "person"]
    assert [a["category_id"] for a in coco.anns.values()] == [12, 15]  # the devkit's class order, from 1
    with pytest.raises(BadRecordError, match=r"000001.xml: classes \['dog', 'person'\] are not among"):
        read_voc(root, ["VOC2007/test"], ("cat",))
    with pytest.raises(FileNotFoundError, match="VOC image set not found"):
        read_voc(root, ["VOC2007/trainval"], VOC_CLASSES)


@pytest.mark.parametrize("text, message", [
    ("<annotation><size><width>10", "malformed VOC annotation XML"),
    ("<annotation><object><name>dog</name></object></annotation>", "no <size> element"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>dog</name></object>"
     "</annotation>", r"object 0 \(dog\) has no <bndbox>"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>dog</name><bndbox><xmin>5</xmin>"
     "<ymin>5</ymin><xmax>4</xmax><ymax>9</ymax></bndbox></object></annotation>", "degenerate box"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>dog</name><bndbox><xmin>1</xmin>"
     "<ymin>1</ymin><xmax>40</xmax><ymax>9</ymax></bndbox></object></annotation>", "outside the 10x10 image"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>dog</name><bndbox><xmin>a</xmin>"
     "</bndbox></object></annotation>", "<xmin> is 'a', not a number"),
])
def test_bad_xml_names_the_file(tmp_path, text, message):
    path = tmp_path / "000007.xml"
    path.write_text(text)
    with pytest.raises(BadRecordError, match=rf"000007.xml: .*{message}"):
        read_voc_xml(path)


def test_skip_bad_counts_bad_xml(voc_root, tmp_path):
    import shutil

    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    (root / "VOC2007" / "Annotations" / "000002.xml").write_text("<annotation>")
    with pytest.raises(BadRecordError, match="000002.xml: malformed"):
        read_voc(root, ["VOC2007/trainval"], ("box", "disc", "ring", "triangle"))
    coco, skipped = read_voc(root, ["VOC2007/trainval"], ("box", "disc", "ring", "triangle"), skip_bad=True)
    assert len(coco.imgs) == 11 and len(skipped) == 1 and "000002.xml" in skipped[0]


def test_fit_and_test_on_voc_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    main(["fit", "--model", "DetectionTask", "--model.num_classes", "4", "--model.backbone.alpha", "0.25",
          "--model.resolution", "96", "--model.extra_depths", "[32, 32, 32, 16]", "--data", "VOCDataModule",
          "--data.root", "VOCdevkit", "--data.synthetic", "true",
          "--data.synthetic_options", "{train_images: 8, test_images: 4, image_size: 96}",
          "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "run"])
    (checkpoint,) = Path("run").rglob("best-epoch=*.ckpt")
    main(["test", "--config", str(next(Path("run").rglob("config.yaml"))), "--ckpt_path", str(checkpoint)])
    rows = [row for row in logged_metrics(Path("run")) if row.get("test/mAP50")]
    assert rows and {"test/mAP", "test/voc07_mAP50"} <= set(rows[-1])
    assert (next(Path("run").rglob("per_category_ap.csv")).read_text().splitlines()[1:] and True)


def _cocoeval_11_point_ap50(ground_truth, detections) -> float:
    """The reference: pycocotools at IoU 0.5 with VOC07's 11 recall points, averaged over the categories."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes([dict(d) for d in detections]), "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.recThrs = np.linspace(0, 1, 11)
        evaluator.params.maxDets = [1, 10, 10_000]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # recall x category, all areas
    return float(np.mean([np.clip(column, 0, None).mean() for column in precision.T]))


def test_voc07_map_equals_pycocotools_at_eleven_recall_points(voc_root):
    """With boxes that do not overlap each other (the synthetic data's mostly), VOC's matching and COCO's agree,
    so pycocotools with VOC07's 11 recall points is the reference; a jittered, partly wrong detector."""
    from mobilenets.tasks.detection.metrics import voc07_map50

    coco, _ = read_voc(voc_root, ["VOC2007/trainval"], ("box", "disc", "ring", "triangle"))
    generator = torch.Generator().manual_seed(0)
    detections = []
    for annotation in coco.anns.values():
        if annotation["iscrowd"]:
            continue
        x, y, w, h = annotation["bbox"]
        for _ in range(2):
            shift = (torch.rand(2, generator=generator) - 0.5) * 0.6 * torch.tensor([w, h])
            wrong = torch.rand(1, generator=generator).item() < 0.2
            category = (annotation["category_id"] % 4) + 1 if wrong else annotation["category_id"]
            detections.append({"image_id": annotation["image_id"], "category_id": category,
                               "bbox": [x + shift[0].item(), y + shift[1].item(), w, h],
                               "score": torch.rand(1, generator=generator).item()})
    ours = voc07_map50(coco, detections)
    assert 0.2 < ours < 0.95
    assert ours == pytest.approx(_cocoeval_11_point_ap50(coco, detections), abs=1e-9)
    perfect = [{"image_id": a["image_id"], "bbox": a["bbox"], "category_id": a["category_id"], "score": 1.0}
               for a in coco.anns.values()]  # difficult objects too: ignored, not false positives
    assert voc07_map50(coco, perfect) == pytest.approx(1.0)
