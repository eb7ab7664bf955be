"""Geolocation benchmarks: S2 cell ids against s2sphere (``mobilenets bench s2``), and training data from image
files against WebDataset shards (``mobilenets bench shards``). Benchmarks only: nothing here is asserted in tests."""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from mobilenets.core.tables import Table
from mobilenets.core.timing import interleaved_medians

__all__ = ["bench_s2", "bench_shards"]


def bench_s2(points: int = 1_000_000, reference_points: int = 50_000, rounds: int = 3) -> Table:
    """S2 leaf cell ids per second: our vectorised NumPy version against s2sphere, one point per call."""
    import numpy as np
    import s2sphere

    from mobilenets.tasks.geolocation.partition import cell_ids

    rng = np.random.default_rng(0)
    lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, points))), rng.uniform(-180, 180, points)

    def reference() -> None:
        for a, b in zip(lat[:reference_points], lon[:reference_points]):
            s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))

    ours = interleaved_medians({"ours": partial(cell_ids, lat, lon)}, rounds, warmup=0)["ours"]
    reference_rate = reference_points / interleaved_medians({"s2sphere": reference}, 1, warmup=0)["s2sphere"]
    our_rate = points / ours
    return Table(
        key="bench_s2",
        title=f"S2 cell ids of {points:,} random points (ours: median of {rounds}; s2sphere: {reference_points:,} points)",
        columns=["implementation", "points/s", "speed-up"],
        rows=[["mobilenets (NumPy, vectorised)", f"{our_rate:,.0f}", f"{our_rate / reference_rate:.1f}x"],
              ["s2sphere (per point)", f"{reference_rate:,.0f}", "1.0x"]],
    )


def _time_loader(data: Any, epochs: int = 1) -> tuple[float, float, int]:
    """(seconds from ``setup`` to the first batch, images/s after it, images seen)."""
    start = time.perf_counter()
    data.setup("fit")
    seen, first_batch, started = 0, None, None
    for _ in range(epochs):
        for batch in data.train_dataloader():
            if first_batch is None:
                first_batch, started = time.perf_counter() - start, time.perf_counter()
                continue
            seen += len(batch["label"])
    return first_batch, seen / (time.perf_counter() - started), seen


def bench_shards(num_images: int = 3000, csv_rows: int = 1_000_000, batch_size: int = 32, num_workers: int = 2,
                 resolution: int = 128) -> Table:
    """Geolocation training data from image files vs from WebDataset shards: the time from ``setup`` to the first
    batch and the images/s of the training loader over two epochs, on a synthetic geotagged set of
    ``num_images`` photos (70% of them training) written first.
    Then what shards still read at start-up for ``csv_rows`` photos: the coordinates of a CSV that size and
    their S2 partition (built once; later starts read the partition file)."""
    import numpy as np

    from mobilenets.tasks.geolocation import GeoDataModule
    from mobilenets.tasks.geolocation.data import read_geotagged_csv
    from mobilenets.tasks.geolocation.partition import build_partition
    from mobilenets.tasks.data.shards import write_shards

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "geo"
        options = dict(resolution=resolution, batch_size=batch_size, num_workers=num_workers, t1=200, t2=10)
        files = GeoDataModule(str(root), synthetic=True, synthetic_options={"num_images": num_images}, **options)
        files.prepare_data()
        write_shards(files, Path(scratch) / "shards", splits=("train",), maxcount=500)
        for name, data in (("image files", GeoDataModule(str(root), **options)),
                           ("shards", GeoDataModule(str(root), shards=str(Path(scratch) / "shards"), **options))):
            first, rate, seen = _time_loader(data, epochs=2)
            rows.append([name, f"{len(data.datasets['train']):,}", f"{first:.2f}", f"{rate:.0f}", seen])
        rng = np.random.default_rng(0)
        lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, csv_rows))), rng.uniform(-180, 180, csv_rows)
        big = Path(scratch) / "big.csv"
        with big.open("w") as handle:
            handle.write("IMG_ID,LAT,LON\n")
            handle.writelines(f"{i},{a:.6f},{b:.6f}\n" for i, (a, b) in enumerate(zip(lat, lon)))
        start = time.perf_counter()
        _, lat, lon, _ = read_geotagged_csv(big, ("IMG_ID", "LAT", "LON"))
        read = time.perf_counter() - start
        start = time.perf_counter()
        partition = build_partition(lat, lon, 10_000, 50, 2, 13)
        built = time.perf_counter() - start
    return Table(
        key="bench_shards",
        title=f"Geolocation training data, {resolution} px, batch {batch_size}, {num_workers} workers",
        columns=["source", "training photos", "setup to first batch (s)", "images/s", "images timed"],
        rows=rows,
        notes=[f"Start-up from shards for {csv_rows:,} photos: reading the CSV's coordinates {read:.1f} s, their "
               f"S2 partition (t1 10,000, t2 50: {len(partition)} cells) {built:.1f} s, once; no image file is "
               f"listed or opened."],
    )
