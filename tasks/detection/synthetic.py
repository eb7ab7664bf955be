"""A small COCO-format detection dataset: shapes of several classes on textured backgrounds.

Objects come at many scales and aspect ratios; some images hold none; some objects are crowd regions
(``iscrowd: 1``); category ids are deliberately non-contiguous, as COCO's. Layout (COCO 2017's)::

    annotations/instances_train2017.json, annotations/instances_val2017.json
    train2017/000000000001.jpg ..., val2017/...
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CATEGORIES", "write_coco"]

# Non-contiguous ids, as COCO's 1..90 with gaps.
CATEGORIES = [
    {"id": 3, "name": "disc", "supercategory": "shape"},
    {"id": 7, "name": "box", "supercategory": "shape"},
    {"id": 11, "name": "triangle", "supercategory": "shape"},
    {"id": 42, "name": "ring", "supercategory": "shape"},
]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    base = rng.integers(40, 200, size=3)
    y, x = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = 25 * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
    pixels = base + stripes[..., None] + rng.normal(0, 12, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


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


def _split(root: Path, split: str, count: int, first_id: int, size: int, rng: np.random.Generator) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(first_id, first_id + count):
        image = _background(rng, size)
        draw = ImageDraw.Draw(image)
        n_objects = 0 if rng.random() < 0.1 else int(rng.integers(1, 4))
        for _ in range(n_objects):
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            scale = rng.uniform(0.15, 0.6) * size
            aspect = rng.choice([0.5, 1.0, 2.0]) * rng.uniform(0.85, 1.15)
            w, h = min(scale * np.sqrt(aspect), size - 2), min(scale / np.sqrt(aspect), size - 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
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
               seed: int = 0) -> Path:
    """Write train2017 and val2017 splits with their instances JSON under ``root``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    _split(root, "train2017", train_images, 1, image_size, rng)
    _split(root, "val2017", val_images, 100_000, image_size, rng)
    return root
