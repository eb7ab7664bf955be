"""Geotagged synthetic photos whose look depends on where they were "taken", clustered unevenly like real photos.

Each region (a cluster of locations on the globe, some far more popular than others) has its own palette and
landmark shape; the horizon height follows latitude and the texture's slant follows longitude, so a model can
learn where an image comes from. Layout: ``images/<IMG_ID>.jpg`` and ``train.csv``, ``val.csv``, ``test.csv``
with ``IMG_ID,LAT,LON`` rows (the MP-16 / Im2GPS convention).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["write_geotagged"]

SIZE = 64


def _regions(rng: np.random.Generator, count: int) -> list[dict]:
    regions = []
    for _ in range(count):
        regions.append({
            "lat": float(np.degrees(np.arcsin(rng.uniform(-0.9, 0.95)))), "lon": float(rng.uniform(-180, 180)),
            "spread": float(rng.uniform(0.5, 4.0)),
            "sky": tuple(int(v) for v in rng.integers(60, 255, size=3)),
            "ground": tuple(int(v) for v in rng.integers(0, 200, size=3)),
            "landmark": int(rng.integers(0, 3)),
        })
    return regions


def _draw(rng: np.random.Generator, region: dict, lat: float, lon: float) -> Image.Image:
    horizon = int(SIZE * (0.3 + 0.4 * (lat + 90) / 180))
    image = Image.new("RGB", (SIZE, SIZE), region["sky"])
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, horizon, SIZE, SIZE), fill=region["ground"])
    slant = lon / 180 * SIZE / 2
    for k in range(0, SIZE * 2, 8):
        draw.line((k - SIZE, SIZE, k - SIZE + slant, horizon), fill=tuple(max(0, c - 40) for c in region["ground"]))
    x = rng.uniform(10, SIZE - 20)
    if region["landmark"] == 0:
        draw.polygon([(x, horizon), (x + 10, horizon - 18), (x + 20, horizon)], fill=(90, 80, 70))
    elif region["landmark"] == 1:
        draw.rectangle((x, horizon - 20, x + 6, horizon), fill=(200, 200, 210))
    else:
        draw.ellipse((x, horizon - 12, x + 16, horizon + 4), fill=(30, 120, 40))
    pixels = np.asarray(image, dtype=np.float64) * rng.uniform(0.8, 1.2) + rng.normal(0, 8, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_geotagged(root: str | Path, num_images: int = 1200, num_regions: int = 12,
                    splits: tuple[float, float] = (0.7, 0.15), seed: int = 0) -> Path:
    """Write ``num_images`` geotagged images from ``num_regions`` unevenly popular regions; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    regions = _regions(rng, num_regions)
    popularity = rng.pareto(1.5, num_regions) + 0.2
    popularity /= popularity.sum()
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_images):
        region = regions[int(rng.choice(num_regions, p=popularity))]
        lat = float(np.clip(region["lat"] + rng.normal(0, region["spread"]), -89.9, 89.9))
        lon = float((region["lon"] + rng.normal(0, region["spread"]) + 180) % 360 - 180)
        image_id = f"{index:07d}"
        _draw(rng, region, lat, lon).save(root / "images" / f"{image_id}.jpg", quality=92)
        rows.append((image_id, round(lat, 6), round(lon, 6)))
    n_train, n_val = int(num_images * splits[0]), int(num_images * splits[1])
    for name, part in (("train", rows[:n_train]), ("val", rows[n_train:n_train + n_val]),
                       ("test", rows[n_train + n_val:])):
        with (root / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["IMG_ID", "LAT", "LON"])
            writer.writerows(part)
    return root
