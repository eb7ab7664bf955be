"""Pascal VOC detection annotations (VOC2007 / VOC2012 layout), read into pycocotools' ``COCO`` so that training,
COCOeval, per-category AP, drawing and export work on them exactly as on COCO (``VOCDataModule``).

The published layout (the devkit's)::

    VOCdevkit/VOC2007/Annotations/000001.xml
    VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt
    VOCdevkit/VOC2007/JPEGImages/000001.jpg

Box corners in the XML are 1-based pixel indices (the devkit's convention); they become 0-based continuous
coordinates by moving ``xmin``/``ymin`` one pixel (as detectron2 reads them). Objects marked ``difficult``
are neither targets nor misses: they become COCO crowd regions, which training leaves out and COCOeval ignores,
as the VOC protocol does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Sequence

from pycocotools.coco import COCO

from mobilenets.core.io import read_text
from mobilenets.tasks.data.images import BadRecordError, record_errors

__all__ = ["VOC_CLASSES", "read_voc", "read_voc_xml"]

log = logging.getLogger(__name__)

#: the 20 Pascal VOC classes in the devkit's order (category ids 1..20)
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _number(element: ElementTree.Element, tag: str, path: Path, where: str) -> float:
    found = element.find(tag)
    if found is None or found.text is None:
        raise BadRecordError(f"{path}: {where} has no <{tag}>")
    try:
        return float(found.text)
    except ValueError:
        raise BadRecordError(f"{path}: {where} <{tag}> is {found.text!r}, not a number") from None


def read_voc_xml(path: Path) -> dict[str, Any]:
    """One annotation file: ``filename``, ``width``, ``height`` and ``objects`` (``name``, ``difficult``,
    ``bbox`` as 0-based xywh), every box checked against the image size."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise BadRecordError(f"{path}: malformed VOC annotation XML: {error}") from None
    size = root.find("size")
    if size is None:
        raise BadRecordError(f"{path}: no <size> element; a VOC annotation gives the image's width and height")
    width, height = _number(size, "width", path, "<size>"), _number(size, "height", path, "<size>")
    objects = []
    for index, element in enumerate(root.findall("object")):
        where = f"object {index}"
        name = (element.findtext("name") or "").strip()
        if not name:
            raise BadRecordError(f"{path}: {where} has no <name>")
        box = element.find("bndbox")
        if box is None:
            raise BadRecordError(f"{path}: {where} ({name}) has no <bndbox>")
        x0, y0, x1, y1 = (_number(box, tag, path, f"{where} ({name})") for tag in ("xmin", "ymin", "xmax", "ymax"))
        x0, y0 = x0 - 1, y0 - 1  # 1-based pixel indices -> 0-based continuous corners
        if not (x1 > x0 and y1 > y0):
            raise BadRecordError(f"{path}: {where} ({name}) has a degenerate box {x0 + 1, y0 + 1, x1, y1}")
        if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
            raise BadRecordError(f"{path}: {where} ({name}) box {x0 + 1, y0 + 1, x1, y1} lies outside the "
                                 f"{width:g}x{height:g} image")
        objects.append({"name": name, "difficult": (element.findtext("difficult") or "0").strip() == "1",
                        "bbox": [x0, y0, x1 - x0, y1 - y0]})
    filename = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    return {"filename": filename, "width": width, "height": height, "objects": objects}


def read_voc(root: Path, sets: Sequence[str], classes: Sequence[str] | None = None, skip_bad: bool = False
             ) -> tuple[COCO, list[str]]:
    """The images of ``sets`` (``VOC2007/trainval`` ...: a year folder under ``root`` and an ImageSets/Main list)
    as a COCO object with ``file_name`` relative to ``root``, and the records skipped with ``skip_bad``.

    ``classes`` are the category names in id order; None takes VOC's 20 if the objects' names are all among them,
    else the names the files use, sorted (your own data in VOC's layout)."""
    records, skipped = [], []
    for set_name in sets:
        year, _, split = set_name.partition("/")
        listing = root / year / "ImageSets" / "Main" / f"{split}.txt"
        if not split or not listing.is_file():
            raise FileNotFoundError(f"{listing}: VOC image set not found; sets are named '<year folder>/<split>' "
                                    f"(VOC2007/trainval) under the VOCdevkit folder {root}")
        for line_number, line in enumerate(read_text(listing).splitlines(), start=1):
            if not line.strip():
                continue
            xml_path = root / year / "Annotations" / f"{line.split()[0]}.xml"
            with record_errors(skipped, skip_bad):
                if not xml_path.is_file():
                    raise BadRecordError(f"{xml_path}: annotation file not found ({listing.name} line {line_number})")
                records.append((year, xml_path, read_voc_xml(xml_path)))
    if classes is None:
        names = {o["name"] for _, _, record in records for o in record["objects"]}
        classes = VOC_CLASSES if names <= set(VOC_CLASSES) else tuple(sorted(names))
    category_of = {name: index for index, name in enumerate(classes, start=1)}
    images, annotations = [], []
    for year, xml_path, record in records:
        with record_errors(skipped, skip_bad):
            unknown = sorted({o["name"] for o in record["objects"]} - set(category_of))
            if unknown:
                raise BadRecordError(f"{xml_path}: classes {unknown} are not among the data module's classes "
                                     f"({', '.join(classes)}); set data.init_args.classes")
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": f"{year}/JPEGImages/{record['filename']}",
                           "width": record["width"], "height": record["height"]})
            for obj in record["objects"]:
                x, y, w, h = obj["bbox"]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": category_of[obj["name"]], "bbox": [x, y, w, h],
                                    "area": w * h, "iscrowd": int(obj["difficult"])})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i, "name": n} for n, i in category_of.items()]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco, skipped
