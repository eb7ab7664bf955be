"""Synthetic identities for face embedding: identity folders for training, LFW-style images and pairs.txt.

Each identity is a fixed set of drawn facial features (face shape, skin tone, hair colour and style, eye
colour and spacing, nose, mouth width, brows, a mole); each of its images varies pose (shift, tilt), lighting,
expression and accessories, so telling identities apart means looking past those. Layout written::

    train/<Identity>/<Identity>_0001.jpg ...     identities for training (VGGFace2 / CASIA-WebFace layout)
    lfw/<Identity>/<Identity>_0001.jpg ...       other identities, for verification (LFW layout)
    pairs.txt                                    LFW format: "10<TAB>N", then per fold N matched lines
                                                 "name n1 n2" and N mismatched lines "name1 n1 name2 n2"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

__all__ = ["write_faces"]

SIZE = 112


def _identity(rng: np.random.Generator) -> dict:
    return {
        "face_w": rng.uniform(26, 36), "face_h": rng.uniform(34, 44),
        "skin": tuple(int(v) for v in rng.integers([120, 80, 60], [240, 200, 170])),
        "hair": tuple(int(v) for v in rng.integers(0, 255, size=3)),
        "hair_style": int(rng.integers(0, 3)),
        "eye": tuple(int(v) for v in rng.integers(0, 160, size=3)),
        "eye_gap": rng.uniform(0.3, 0.5), "eye_size": rng.uniform(2.5, 4.5),
        "nose_len": rng.uniform(5, 12), "mouth_w": rng.uniform(7, 15),
        "brow": rng.uniform(1, 4), "mole": (rng.uniform(-0.6, 0.6), rng.uniform(-0.2, 0.6)),
    }


def _draw(rng: np.random.Generator, person: dict) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(30, 230, size=3))  # per image, so it says nothing of who
    image = Image.new("RGB", (SIZE, SIZE), background)
    draw = ImageDraw.Draw(image)
    cx, cy = SIZE / 2 + rng.uniform(-6, 6), SIZE / 2 + rng.uniform(-5, 5)
    fw, fh = person["face_w"], person["face_h"]
    hair = person["hair"]
    if person["hair_style"] == 1:  # long
        draw.rectangle((cx - fw - 5, cy - fh * 0.5, cx + fw + 5, cy + fh * 0.8), fill=hair)
    draw.ellipse((cx - fw - 3, cy - fh - 5, cx + fw + 3, cy + fh * (0.1 if person["hair_style"] != 2 else -0.4)),
                 fill=hair)
    draw.ellipse((cx - fw, cy - fh, cx + fw, cy + fh), fill=person["skin"])
    eye_y = cy - fh * 0.2
    for side in (-1, 1):
        ex, size = cx + side * fw * person["eye_gap"] * 2, person["eye_size"]
        draw.ellipse((ex - size * 1.6, eye_y - size, ex + size * 1.6, eye_y + size), fill=(250, 250, 250))
        draw.ellipse((ex - size * 0.8, eye_y - size * 0.8, ex + size * 0.8, eye_y + size * 0.8), fill=person["eye"])
        draw.line((ex - size * 2, eye_y - size * 2.5, ex + size * 2, eye_y - size * 2.5), fill=(40, 30, 20),
                  width=int(round(person["brow"])))
    draw.line((cx, eye_y + 3, cx, eye_y + 3 + person["nose_len"]), fill=(90, 60, 50), width=2)
    mouth_y, mouth_w = cy + fh * 0.5, person["mouth_w"]
    if rng.random() < 0.5:  # expression: smile or neutral
        draw.chord((cx - mouth_w, mouth_y - 5, cx + mouth_w, mouth_y + 5), 0, 180, fill=(150, 40, 50))
    else:
        draw.line((cx - mouth_w, mouth_y, cx + mouth_w, mouth_y), fill=(140, 50, 50), width=2)
    mx, my = cx + person["mole"][0] * fw, cy + person["mole"][1] * fh
    draw.ellipse((mx - 1.5, my - 1.5, mx + 1.5, my + 1.5), fill=(50, 30, 20))
    if rng.random() < 0.2:  # accessory: glasses
        for side in (-1, 1):
            ex = cx + side * fw * person["eye_gap"] * 2
            draw.ellipse((ex - 8, eye_y - 6, ex + 8, eye_y + 6), outline=(20, 20, 20), width=2)
    image = image.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, fillcolor=background)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))  # lighting
    noise = rng.normal(0, 5, size=(SIZE, SIZE, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def _write_identities(root: Path, prefix: str, count: int, images: int, rng: np.random.Generator) -> list[str]:
    names = []
    for index in range(count):
        name = f"{prefix}_{index:04d}"
        person = _identity(rng)
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(1, images + 1):
            _draw(rng, person).save(root / name / f"{name}_{n:04d}.jpg", quality=92)
        names.append(name)
    return names


def write_faces(root: str | Path, train_identities: int = 40, train_images: int = 8, test_identities: int = 40,
                test_images: int = 4, folds: int = 10, pairs_per_fold: int = 20, seed: int = 0) -> Path:
    """Write training identities, verification identities and a 10-fold ``pairs.txt``; returns ``root``.

    Each fold draws its matched and mismatched pairs from its own identities, as LFW's folds are disjoint.
    """
    if test_identities < 2 * folds:
        raise ValueError(f"need at least {2 * folds} test identities for {folds} disjoint folds")
    root = Path(root)
    rng = np.random.default_rng(seed)
    _write_identities(root / "train", "Train_Person", train_identities, train_images, rng)
    names = _write_identities(root / "lfw", "Test_Person", test_identities, test_images, rng)
    lines = [f"{folds}\t{pairs_per_fold}"]
    for fold_names in np.array_split(np.array(names), folds):
        for _ in range(pairs_per_fold):
            name = rng.choice(fold_names)
            first, second = rng.choice(np.arange(1, test_images + 1), size=2, replace=False)
            lines.append(f"{name}\t{first}\t{second}")
        for _ in range(pairs_per_fold):
            name_a, name_b = rng.choice(fold_names, size=2, replace=False)
            lines.append(f"{name_a}\t{rng.integers(1, test_images + 1)}\t{name_b}\t{rng.integers(1, test_images + 1)}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root
