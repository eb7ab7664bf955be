"""Small Stanford Dogs and ImageNet look-alikes, written in exactly the published layouts, deterministic from a seed.

Every "breed" is the same dog silhouette (body, head, ears, legs, tail) on a textured background; breeds
differ only in coat pattern and ear colour, so telling them apart is fine-grained but learnable.
Layout written (as the real dataset ships it)::

    Images/<wnid>-<Breed>/<wnid>_<n>.jpg
    Annotation/<wnid>-<Breed>/<wnid>_<n>          VOC-style XML, no extension
    lists/train_list.mat, test_list.mat, file_list.mat   MATLAB cell arrays: file_list, annotation_list, labels
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

__all__ = ["BREEDS", "write_imagenet", "write_stanford_dogs"]

# (breed name, coat pattern, coat colour, ear colour): pairs of breeds share all but one detail.
BREEDS = [
    ("Chihuahua", "solid", (196, 140, 80), (120, 70, 30)),
    ("Japanese_spaniel", "solid", (196, 140, 80), (40, 30, 25)),
    ("Dalmatian", "spots", (235, 235, 230), (40, 30, 25)),
    ("English_setter", "spots", (235, 235, 230), (150, 90, 40)),
    ("Tibetan_mastiff", "stripes", (90, 60, 40), (40, 30, 25)),
    ("Boxer", "stripes", (196, 140, 80), (40, 30, 25)),
    ("Beagle", "patches", (235, 235, 230), (150, 90, 40)),
    ("Basset", "patches", (196, 140, 80), (235, 235, 230)),
    ("Samoyed", "solid", (240, 240, 240), (240, 240, 240)),
    ("Pug", "solid", (200, 170, 120), (30, 25, 20)),
]


def _draw_dog(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int],
              breed: tuple, facing_right: bool) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    _, pattern, coat, ears = breed
    body = (x0 + 0.15 * w, y0 + 0.35 * h, x0 + 0.85 * w, y0 + 0.75 * h)
    head_cx = x0 + (0.82 if facing_right else 0.18) * w
    head = (head_cx - 0.16 * w, y0 + 0.1 * h, head_cx + 0.16 * w, y0 + 0.48 * h)
    for leg_x in (0.22, 0.38, 0.62, 0.78):
        lx = x0 + leg_x * w
        draw.rectangle((lx - 0.04 * w, y0 + 0.65 * h, lx + 0.04 * w, y1), fill=coat)
    tail_x = x0 + (0.1 if facing_right else 0.9) * w
    draw.line((tail_x, y0 + 0.2 * h, x0 + (0.2 if facing_right else 0.8) * w, y0 + 0.45 * h), fill=coat,
              width=max(2, int(0.04 * w)))
    draw.ellipse(body, fill=coat)
    draw.ellipse(head, fill=coat)
    dark = tuple(max(0, c - 110) for c in coat)
    bx0, by0, bx1, by1 = body
    if pattern == "spots":
        for _ in range(14):
            cx, cy = rng.uniform(bx0 + 0.1 * w, bx1 - 0.1 * w), rng.uniform(by0 + 0.05 * h, by1 - 0.05 * h)
            r = 0.025 * w
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=dark)
    elif pattern == "stripes":
        for i in range(1, 7):
            sx = bx0 + i * (bx1 - bx0) / 7
            draw.line((sx, by0 + 0.05 * h, sx, by1 - 0.05 * h), fill=dark, width=max(2, int(0.025 * w)))
    elif pattern == "patches":
        cx = rng.uniform(bx0 + 0.2 * w, bx1 - 0.2 * w)
        draw.ellipse((cx - 0.15 * w, by0, cx + 0.15 * w, by0 + 0.25 * h), fill=dark)
    for side in (-1, 1):
        ex = head_cx + side * 0.11 * w
        draw.polygon([(ex - 0.06 * w, y0 + 0.16 * h), (ex + 0.06 * w, y0 + 0.16 * h), (ex, y0)], fill=ears)
    eye_x = head_cx + (0.06 if facing_right else -0.06) * w
    draw.ellipse((eye_x - 0.02 * w, y0 + 0.22 * h, eye_x + 0.02 * w, y0 + 0.26 * h), fill=(10, 10, 10))


def _render(rng: np.random.Generator, breed: tuple, size: tuple[int, int]) -> tuple[Image.Image, tuple]:
    width, height = size
    background = rng.integers(60, 200, size=3)
    noise = rng.normal(0, 18, size=(height, width, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    dog_w = int(rng.uniform(0.5, 0.8) * width)
    dog_h = int(dog_w * rng.uniform(0.7, 0.9))
    dog_h = min(dog_h, height - 2)
    x0 = int(rng.integers(0, width - dog_w))
    y0 = int(rng.integers(0, height - dog_h))
    box = (x0, y0, x0 + dog_w, y0 + dog_h)
    _draw_dog(ImageDraw.Draw(image), rng, box, breed, facing_right=bool(rng.integers(0, 2)))
    return image, box


def _annotation_xml(file_id: str, breed_name: str, size: tuple[int, int], box: tuple) -> bytes:
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = "%s"
    ElementTree.SubElement(root, "filename").text = file_id
    size_el = ElementTree.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3)):
        ElementTree.SubElement(size_el, tag).text = str(value)
    obj = ElementTree.SubElement(root, "object")
    ElementTree.SubElement(obj, "name").text = breed_name
    bndbox = ElementTree.SubElement(obj, "bndbox")
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
        ElementTree.SubElement(bndbox, tag).text = str(value)
    return ElementTree.tostring(root)


def _cell_array(strings: list[str]) -> np.ndarray:
    """An N x 1 MATLAB cell array of strings, as Stanford Dogs' lists store them."""
    cells = np.empty((len(strings), 1), dtype=object)
    for i, text in enumerate(strings):
        cells[i, 0] = np.array([text])
    return cells


def write_stanford_dogs(
    root: str | Path,
    num_classes: int = 6,
    train_per_class: int = 20,
    test_per_class: int = 8,
    image_size: tuple[int, int] = (112, 96),
    seed: int = 0,
    breeds: list[str] | None = None,
) -> Path:
    """Write a synthetic Stanford Dogs under ``root``; returns ``root``.

    Args:
        num_classes: breeds, at most ``len(BREEDS)``.
        train_per_class: images per breed in ``train_list.mat``.
        test_per_class: images per breed in ``test_list.mat``.
        image_size: (width, height) of every image; the real dataset's are about 500 x 375.
        seed: the same seed writes byte-identical files.
        breeds: names from ``BREEDS`` to use instead of the first ``num_classes`` (which come in
            look-alike pairs, the fine-grained case).
    """
    by_name = {breed[0]: breed for breed in BREEDS}
    if breeds is not None:
        unknown = [name for name in breeds if name not in by_name]
        if unknown:
            raise ValueError(f"unknown breeds {unknown}; choose from {list(by_name)}")
        chosen = [by_name[name] for name in breeds]
    elif 1 <= num_classes <= len(BREEDS):
        chosen = BREEDS[:num_classes]
    else:
        raise ValueError(f"num_classes must be in 1..{len(BREEDS)}, got {num_classes}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    lists: dict[str, tuple[list[str], list[str], list[int]]] = {"train": ([], [], []), "test": ([], [], [])}
    for label, breed in enumerate(chosen, start=1):
        wnid = f"n{2085620 + BREEDS.index(breed) + 1:08d}"
        folder = f"{wnid}-{breed[0]}"
        (root / "Images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
        for index in range(train_per_class + test_per_class):
            split = "train" if index < train_per_class else "test"
            file_id = f"{wnid}_{index:05d}"
            image, box = _render(rng, breed, image_size)
            image.save(root / "Images" / folder / f"{file_id}.jpg", quality=92)
            (root / "Annotation" / folder / file_id).write_bytes(_annotation_xml(file_id, breed[0], image_size, box))
            files, annotations, labels = lists[split]
            files.append(f"{folder}/{file_id}.jpg")
            annotations.append(f"{folder}/{file_id}")
            labels.append(label)
    (root / "lists").mkdir(exist_ok=True)
    everything = tuple(a + b for a, b in zip(lists["train"], lists["test"]))
    for name, (files, annotations, labels) in (*lists.items(), ("file", everything)):
        scipy.io.savemat(
            root / "lists" / f"{name}_list.mat",
            {
                "file_list": _cell_array(files),
                "annotation_list": _cell_array(annotations),
                "labels": np.array(labels, dtype=np.float64).reshape(-1, 1),
            },
        )
    return root


# Real ILSVRC-2012 WordNet ids, deliberately not in sorted order: class indices must come from sorting them.
IMAGENET_WNIDS = ["n02085620", "n01440764", "n02110341", "n01518878", "n04589890", "n02085782", "n03000134",
                  "n01443537", "n02110063", "n02099601"]


def _write_devkit(folder: Path, wnids: list[str], val_wnids: list[str], rng: np.random.Generator) -> None:
    """``data/meta.mat`` (the synsets table: leaves numbered 1..N in the devkit's own, unsorted, order, then
    inner synsets) and ``data/ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per validation image)."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    ids = {wnid: int(number) for wnid, number in zip(wnids, rng.permutation(len(wnids)) + 1)}
    synsets = np.zeros((len(wnids) + 2, 1), dtype=[(name, object) for name in fields])
    for row, wnid in enumerate(sorted(wnids, key=ids.get)):
        synsets[row, 0] = (ids[wnid], wnid, f"class {wnid}", "a synthetic class", 0, np.zeros((1, 0)), 0, 10)
    for extra in range(2):  # inner nodes of the WordNet tree, which the devkit lists after the leaves
        number = len(wnids) + extra + 1
        synsets[len(wnids) + extra, 0] = (number, f"n0000000{extra}", "entity", "", 2, np.array([[1, 2]]), 5, 0)
    data = folder / "data"
    data.mkdir(parents=True)
    scipy.io.savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for w in val_wnids))


def write_imagenet(
    root: str | Path,
    num_classes: int = 6,
    train_per_class: int = 12,
    val_per_class: int = 4,
    image_size: tuple[int, int] = (112, 96),
    layout: str = "kaggle",
    seed: int = 0,
) -> Path:
    """Write a synthetic ILSVRC-2012 under ``root`` in one of its distributed layouts; returns ``root``.

    Args:
        num_classes: classes (the dog breeds of ``BREEDS`` drawn under real ImageNet wnids), at most 10.
        train_per_class: training images per class.
        val_per_class: validation images per class.
        image_size: (width, height); the real images average about 400 x 350.
        layout: ``kaggle`` (``ILSVRC/Data/CLS-LOC/{train,val}``, flat val, ``LOC_val_solution.csv``,
            ``LOC_synset_mapping.txt``), ``devkit`` (``train/``, flat ``val/``, ``ILSVRC2012_devkit_t12/``) or
            ``folders`` (``train/<wnid>/``, ``val/<wnid>/``).
        seed: the same seed writes byte-identical files.
    """
    if not 1 <= num_classes <= len(IMAGENET_WNIDS):
        raise ValueError(f"num_classes must be in 1..{len(IMAGENET_WNIDS)}, got {num_classes}")
    if layout not in ("kaggle", "devkit", "folders"):
        raise ValueError(f"layout must be 'kaggle', 'devkit' or 'folders', got {layout!r}")
    root = Path(root)
    images = root / "ILSVRC" / "Data" / "CLS-LOC" if layout == "kaggle" else root
    rng = np.random.default_rng(seed)
    wnids = IMAGENET_WNIDS[:num_classes]
    for wnid, breed in zip(wnids, BREEDS):
        (images / "train" / wnid).mkdir(parents=True)
        for index in range(train_per_class):
            _render(rng, breed, image_size)[0].save(images / "train" / wnid / f"{wnid}_{index}.JPEG", quality=90)
    val_wnids = [wnids[i] for i in rng.permutation(np.repeat(np.arange(num_classes), val_per_class))]
    solution = ["ImageId,PredictionString"]
    (images / "val").mkdir(parents=True)
    for number, wnid in enumerate(val_wnids, start=1):
        image, box = _render(rng, BREEDS[wnids.index(wnid)], image_size)
        name = f"ILSVRC2012_val_{number:08d}"
        folder = images / "val" / (wnid if layout == "folders" else "")
        folder.mkdir(exist_ok=True)
        image.save(folder / f"{name}.JPEG", quality=90)
        solution.append(f"{name},{wnid} {' '.join(map(str, box))} ")
    if layout == "kaggle":
        (root / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {w}\n" for w in sorted(wnids)))
    elif layout == "devkit":
        _write_devkit(root / "ILSVRC2012_devkit_t12", wnids, val_wnids, rng)
    return root
