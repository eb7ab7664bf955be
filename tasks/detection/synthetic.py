"""A small COCO-format detection dataset: shapes of several classes on textured backgrounds.

Objects come at many scales and aspect ratios; some images hold none; some objects are crowd regions
(``iscrowd: 1``); category ids are deliberately non-contiguous, as COCO's. Layout (COCO 2017's)::

    annotations/instances_train2017.json, annotations/instances_val2017.json
    train2017/000000000001.jpg ..., val2017/...
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CATEGORIES", "write_coco", "write_voc"]

# Non-contiguous ids, as COCO's 1..90 with gaps.
CATEGORIES = [
    {"id": 3, "name": "disc", "supercategory": "shape"},
    {"id": 7, "name": "box", "supercategory": "shape"},
    {"id": 11, "name": "triangle", "supercategory": "shape"},
    {"id": 42, "name": "ring", "supercategory": "shape"},
]


def _background(rng: np.random.Generator, size: int, texture: float) -> Image.Image:
    base = rng.integers(40, 200, size=3)
    y, x = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = texture * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
    pixels = base + stripes[..., None] + rng.normal(0, 12, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _colour(rng: np.random.Generator, category_id: int | None) -> tuple[int, ...]:
    """A random colour, or one near the category's own hue (a cue a small network learns quickly)."""
    if category_id is None:
        return tuple(int(v) for v in rng.integers(0, 256, size=3))
    hue = (CATEGORIES.index(next(c for c in CATEGORIES if c["id"] == category_id)) / len(CATEGORIES)
           + rng.uniform(-0.04, 0.04)) % 1.0
    return tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0)))


def _draw_object(draw: ImageDraw.ImageDraw, name: str, box: tuple[float, float, float, float], colour: tuple) -> None:
    x0, y0, x1, y1 = box
    if name == "disc":
        draw.ellipse(box, fill=colour)
    elif name == "box":
        draw.rectangle(box, fill=colour)
    elif name == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        draw.ellipse(box, outline=colour, width=max(2, int(min(x1 - x0, y1 - y0) / 5)))


def _split(root: Path, split: str, count: int, first_id: int, size: int, rng: np.random.Generator,
           scale_range: tuple[float, float], max_objects: int, texture: float, class_colours: bool) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(first_id, first_id + count):
        image = _background(rng, size, texture)
        draw = ImageDraw.Draw(image)
        n_objects = 0 if rng.random() < 0.1 else int(rng.integers(1, max_objects + 1))
        for _ in range(n_objects):
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            scale = rng.uniform(*scale_range) * size
            aspect = rng.choice([0.5, 1.0, 2.0]) * rng.uniform(0.85, 1.15)
            w, h = min(scale * np.sqrt(aspect), size - 2), min(scale / np.sqrt(aspect), size - 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            colour = _colour(rng, category["id"] if class_colours else None)
            _draw_object(draw, category["name"], (x, y, x + w, y + h), colour)
            crowd = int(len(annotations) % 20 == 7)  # one object in twenty is a crowd region
            annotations.append({
                "id": len(annotations) + first_id * 10, "image_id": image_id, "category_id": category["id"],
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2),
                "iscrowd": crowd, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            })
        name = f"{image_id:012d}.jpg"
        image.save(root / split / name, quality=92)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
    payload = {"info": {"description": "mobilenet-suite synthetic COCO"}, "licenses": [], "images": images,
               "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(payload))


def write_coco(root: str | Path, train_images: int = 200, val_images: int = 50, image_size: int = 160,
               scale_range: tuple[float, float] = (0.15, 0.6), max_objects: int = 3, texture: float = 25.0,
               class_colours: bool = False, seed: int = 0) -> Path:
    """Write train2017 and val2017 splits with their instances JSON under ``root``; returns ``root``.

    ``scale_range`` bounds an object's size as a fraction of the image side; ``texture`` is the amplitude
    (0-255 grey levels) of the background stripes; ``class_colours`` draws each category near its own hue
    instead of in any colour (shape is then not the only cue).
    """
    if not 0 < scale_range[0] <= scale_range[1] < 1:
        raise ValueError(f"scale_range must satisfy 0 < low <= high < 1, got {scale_range}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    options = dict(scale_range=tuple(scale_range), max_objects=max_objects, texture=texture,
                   class_colours=class_colours)
    _split(root, "train2017", train_images, 1, image_size, rng, **options)
    _split(root, "val2017", val_images, 100_000, image_size, rng, **options)
    return root


def write_voc(root: str | Path, train_images: int = 200, test_images: int = 50, image_size: int = 160,
              year: str = "VOC2007", seed: int = 0, **options: object) -> Path:
    """The same shapes in Pascal VOC's layout under ``root`` (a VOCdevkit folder): ``<year>/JPEGImages``,
    ``<year>/Annotations/*.xml`` (1-based corners; crowd regions become ``difficult`` objects) and
    ``<year>/ImageSets/Main/{trainval,test}.txt``; ``options`` as ``write_coco``'s."""
    import shutil
    import tempfile

    root = Path(root)
    folder = root / year
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        write_coco(scratch, train_images=train_images, val_images=test_images, image_size=image_size, seed=seed,
                   **options)
        for split, image_set in (("train2017", "trainval"), ("val2017", "test")):
            coco = json.loads((Path(scratch) / "annotations" / f"instances_{split}.json").read_text())
            names = {c["id"]: c["name"] for c in coco["categories"]}
            stems = []
            for image in coco["images"]:
                stem = f"{image['id']:06d}"
                shutil.copy(Path(scratch) / split / image["file_name"], folder / "JPEGImages" / f"{stem}.jpg")
                objects = "".join(
                    f"<object><name>{names[a['category_id']]}</name><pose>Unspecified</pose><truncated>0</truncated>"
                    f"<difficult>{a['iscrowd']}</difficult><bndbox><xmin>{int(a['bbox'][0]) + 1}</xmin>"
                    f"<ymin>{int(a['bbox'][1]) + 1}</ymin><xmax>{int(a['bbox'][0] + a['bbox'][2])}</xmax>"
                    f"<ymax>{int(a['bbox'][1] + a['bbox'][3])}</ymax></bndbox></object>"
                    for a in coco["annotations"] if a["image_id"] == image["id"])
                (folder / "Annotations" / f"{stem}.xml").write_text(
                    f"<annotation><folder>{year}</folder><filename>{stem}.jpg</filename>"
                    f"<source><database>mobilenet-suite synthetic</database></source><size><width>{image['width']}"
                    f"</width><height>{image['height']}</height><depth>3</depth></size><segmented>0</segmented>"
                    f"{objects}</annotation>\n")
                stems.append(stem)
            (folder / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(stems) + "\n")
    return root
