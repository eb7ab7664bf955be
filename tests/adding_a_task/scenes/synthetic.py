"""Day and night scenes in an ImageFolder tree: ``<split>/<scene>/<n>.png``; day is bright, night dark."""

from pathlib import Path

import numpy as np
from PIL import Image

SCENES = ("day", "night")


def write_scenes(root: str | Path, seed: int = 0, per_class: int = 12) -> Path:
    root, rng = Path(root), np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, scene in enumerate(SCENES):
            folder = root / split / scene
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                level = 200 if label == 0 else 40
                pixels = np.clip(rng.normal(level, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root
