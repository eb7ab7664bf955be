"""Drawn faces with visible attributes, written in the CelebA layout at CelebA's aligned size (178 x 218).

Attributes use CelebA's names and drawings a model can see (glasses, smile, hat, beard, hair colour,
bangs, earrings, pale skin); some correlate as in the real data (beards only on men, earrings mostly on
women, short hair on men). Files written, as CelebA ships them::

    img_align_celeba/000001.jpg ...
    list_attr_celeba.txt       count line, attribute names, then "<file> -1  1 ..." (CelebA's spacing)
    list_eval_partition.txt    "<file> <0 train | 1 val | 2 test>"
    list_bbox_celeba.txt       count line, "image_id x_1 y_1 width height", then one face box per file
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["ATTRIBUTES", "write_celeba"]

ATTRIBUTES = [
    "Bangs", "Black_Hair", "Blond_Hair", "Eyeglasses", "Male", "No_Beard", "Pale_Skin", "Smiling",
    "Wearing_Earrings", "Wearing_Hat",
]
WIDTH, HEIGHT = 178, 218


def _sample_attributes(rng: np.random.Generator) -> dict[str, bool]:
    male = rng.random() < 0.45
    hair = rng.choice(["black", "blond", "brown"], p=[0.4, 0.3, 0.3])
    return {
        "Bangs": rng.random() < 0.3,
        "Black_Hair": hair == "black",
        "Blond_Hair": hair == "blond",
        "Eyeglasses": rng.random() < 0.3,
        "Male": male,
        "No_Beard": not (male and rng.random() < 0.5),
        "Pale_Skin": rng.random() < 0.25,
        "Smiling": rng.random() < 0.5,
        "Wearing_Earrings": rng.random() < (0.05 if male else 0.55),
        "Wearing_Hat": rng.random() < 0.25,
    }


def _draw_face(rng: np.random.Generator, attrs: dict[str, bool]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    background = tuple(int(v) for v in rng.integers(40, 220, size=3))
    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(image)
    cx, cy = WIDTH / 2 + rng.uniform(-6, 6), HEIGHT / 2 + rng.uniform(-4, 8)
    fw, fh = rng.uniform(48, 56), rng.uniform(64, 72)
    skin = (245, 225, 215) if attrs["Pale_Skin"] else tuple(int(v) for v in rng.integers([150, 100, 70], [215, 160, 120]))
    hair = {True: (25, 20, 20)}.get(attrs["Black_Hair"]) or ((235, 205, 110) if attrs["Blond_Hair"] else (110, 70, 40))
    if not attrs["Male"]:  # long hair behind the face
        draw.rectangle((cx - fw - 8, cy - fh * 0.6, cx + fw + 8, cy + fh * 0.9), fill=hair)
    draw.ellipse((cx - fw - 4, cy - fh - 6, cx + fw + 4, cy + fh * 0.2), fill=hair)  # hair on top
    draw.ellipse((cx - fw, cy - fh, cx + fw, cy + fh), fill=skin)
    if attrs["Bangs"]:
        draw.chord((cx - fw, cy - fh - 2, cx + fw, cy - fh * 0.2), 180, 360, fill=hair)
    if not attrs["No_Beard"]:
        draw.chord((cx - fw, cy - fh * 0.2, cx + fw, cy + fh), 20, 160, fill=(60, 45, 35))
    eye_y = cy - fh * 0.25
    for side in (-1, 1):
        ex = cx + side * fw * 0.42
        draw.ellipse((ex - 5, eye_y - 4, ex + 5, eye_y + 4), fill=(255, 255, 255))
        draw.ellipse((ex - 2.5, eye_y - 2.5, ex + 2.5, eye_y + 2.5), fill=(30, 30, 60))
        if attrs["Eyeglasses"]:
            draw.ellipse((ex - 15, eye_y - 12, ex + 15, eye_y + 12), outline=(10, 10, 10), width=5)
        if attrs["Wearing_Earrings"]:
            draw.ellipse((cx + side * fw - 4, cy + 2, cx + side * fw + 4, cy + 10), fill=(240, 200, 30))
    if attrs["Eyeglasses"]:
        draw.line((cx - fw * 0.42 + 15, eye_y, cx + fw * 0.42 - 15, eye_y), fill=(10, 10, 10), width=5)
    mouth_y = cy + fh * 0.45
    if attrs["Smiling"]:
        draw.chord((cx - 24, mouth_y - 16, cx + 24, mouth_y + 16), 0, 180, fill=(150, 30, 40))
        draw.rectangle((cx - 16, mouth_y, cx + 16, mouth_y + 5), fill=(250, 250, 250))
    else:
        draw.line((cx - 14, mouth_y + 2, cx + 14, mouth_y + 2), fill=(120, 40, 40), width=3)
    if attrs["Wearing_Hat"]:
        hat = tuple(int(v) for v in rng.integers(0, 90, size=3))  # dark felt, with a white band
        draw.rectangle((cx - fw * 0.9, cy - fh - 34, cx + fw * 0.9, cy - fh * 0.75), fill=hat)
        draw.rectangle((cx - fw * 0.9, cy - fh * 0.95, cx + fw * 0.9, cy - fh * 0.85), fill=(240, 240, 240))
        draw.rectangle((cx - fw - 14, cy - fh * 0.8, cx + fw + 14, cy - fh * 0.68), fill=hat)
    noise = rng.normal(0, 6, size=(HEIGHT, WIDTH, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    box = (int(cx - fw), int(cy - fh), int(2 * fw), int(2 * fh))
    return Image.fromarray(pixels), box


def write_celeba(root: str | Path, num_images: int = 300, partition: tuple[float, float] = (0.7, 0.15),
                 seed: int = 0) -> Path:
    """Write ``num_images`` synthetic faces in the CelebA layout under ``root``; returns ``root``.

    Args:
        partition: fractions for train and val (the rest is test), in file order as CelebA does.
        seed: the same seed writes byte-identical files.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    attr_lines, partition_lines, bbox_lines = [], [], []
    n_train, n_val = int(num_images * partition[0]), int(num_images * partition[1])
    for index in range(1, num_images + 1):
        name = f"{index:06d}.jpg"
        attrs = _sample_attributes(rng)
        image, box = _draw_face(rng, attrs)
        image.save(root / "img_align_celeba" / name, quality=92)
        attr_lines.append(name + " " + " ".join(f"{1 if attrs[a] else -1:2d}" for a in ATTRIBUTES))
        split = 0 if index <= n_train else 1 if index <= n_train + n_val else 2
        partition_lines.append(f"{name} {split}")
        bbox_lines.append(f"{name} {box[0]:5d} {box[1]:4d} {box[2]:4d} {box[3]:4d}")
    (root / "list_attr_celeba.txt").write_text(
        f"{num_images}\n" + " ".join(ATTRIBUTES) + " \n" + "\n".join(attr_lines) + "\n"
    )
    (root / "list_eval_partition.txt").write_text("\n".join(partition_lines) + "\n")
    (root / "list_bbox_celeba.txt").write_text(
        f"{num_images}\nimage_id x_1 y_1 width height\n" + "\n".join(bbox_lines) + "\n"
    )
    return root
