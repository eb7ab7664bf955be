"""PlaNet's adaptive S2 partition of the globe, with S2 cell ids computed over whole NumPy arrays.

``cell_ids`` is s2sphere's ``CellId.from_lat_lng`` step for step (lat/lng -> unit vector -> cube face ->
(u, v) -> quadratic (s, t) -> (i, j) -> Hilbert position via s2sphere's own lookup table), vectorised, since
s2sphere converts one point per Python call and real datasets hold millions of photos. The partition splits
a cell while it holds more than ``t1`` photos and drops cells with fewer than ``t2`` (PlaNet: 10,000 and 50).
Partition files use the CSV of later PlaNet work: ``class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import s2sphere
from s2sphere.sphere import INVERT_MASK, LOOKUP_BITS, LOOKUP_POS, SWAP_MASK

from mobilenets.core.io import read_text

__all__ = ["Partition", "build_partition", "build_partitions", "cell_ids", "parent_ids", "read_partition",
           "validate_coordinates", "write_partition"]

MAX_LEVEL = 30
_MAX_SIZE = 1 << MAX_LEVEL
_LOOKUP_POS = np.array(LOOKUP_POS, dtype=np.uint64)
# s2sphere's valid_face_xyz_to_uv per face: u = sign_u * xyz[u_axis] / xyz[face_axis], v likewise
_FACE_AXIS = np.array([0, 1, 2, 0, 1, 2])
_U_AXIS, _U_SIGN = np.array([1, 0, 0, 2, 2, 1]), np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
_V_AXIS, _V_SIGN = np.array([2, 2, 1, 1, 0, 0]), np.array([1.0, 1.0, -1.0, 1.0, -1.0, -1.0])


def validate_coordinates(lat: np.ndarray, lon: np.ndarray, source: str, skip_bad: bool = False
                         ) -> tuple[np.ndarray, list[str]]:
    """Rows with a usable coordinate; errors name the row (NaN, non-numeric, outside [-90, 90] x [-180, 180])."""
    lat_f = np.asarray(lat, dtype=np.float64)
    lon_f = np.asarray(lon, dtype=np.float64)
    bad = ~(np.isfinite(lat_f) & np.isfinite(lon_f) & (np.abs(lat_f) <= 90) & (np.abs(lon_f) <= 180))
    messages = [f"{source} row {i}: coordinate ({lat_f[i]}, {lon_f[i]}) is not a valid latitude/longitude"
                for i in np.flatnonzero(bad)]
    if messages and not skip_bad:
        raise ValueError(messages[0] + (f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""))
    return ~bad, messages


def cell_ids(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Leaf (level-30) S2 cell ids of coordinates in degrees, as uint64; equal to s2sphere's bit for bit."""
    lat_r, lon_r = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    cos_lat = np.cos(lat_r)
    xyz = np.stack([np.cos(lon_r) * cos_lat, np.sin(lon_r) * cos_lat, np.sin(lat_r)])
    a = np.abs(xyz)
    face = np.where(a[0] > a[1], np.where(a[0] > a[2], 0, 2), np.where(a[1] > a[2], 1, 2))
    face = np.where(np.take_along_axis(xyz, face[None], 0)[0] < 0, face + 3, face)
    index = np.arange(xyz.shape[1])
    numerator_u, numerator_v = xyz[_U_AXIS[face], index], xyz[_V_AXIS[face], index]
    denominator = xyz[_FACE_AXIS[face], index]
    u = _U_SIGN[face] * numerator_u / denominator  # the sign flip is exact: same bits as s2sphere's -x / y
    v = _V_SIGN[face] * numerator_v / denominator

    def st_to_ij(uv: np.ndarray) -> np.ndarray:
        # s2sphere: 0.5 * sqrt(1 + 3u) for u >= 0, else 1 - 0.5 * sqrt(1 - 3u); 1 - 3u == 1 + 3|u| exactly
        half_root = 0.5 * np.sqrt(1 + 3 * np.abs(uv))
        st = np.where(uv >= 0, half_root, 1 - half_root)
        return np.clip(np.floor(_MAX_SIZE * st), 0, _MAX_SIZE - 1).astype(np.uint64)

    i, j = st_to_ij(u), st_to_ij(v)
    face = face.astype(np.uint64)
    n = face << np.uint64(60)
    bits = face & np.uint64(SWAP_MASK)
    mask = np.uint64((1 << LOOKUP_BITS) - 1)
    for k in range(7, -1, -1):
        shift = np.uint64(k * LOOKUP_BITS)
        bits = bits + (((i >> shift) & mask) << np.uint64(LOOKUP_BITS + 2)) + (((j >> shift) & mask) << np.uint64(2))
        bits = _LOOKUP_POS[bits]
        n |= (bits >> np.uint64(2)) << np.uint64(k * 2 * LOOKUP_BITS)
        bits &= np.uint64(SWAP_MASK | INVERT_MASK)
    return n * np.uint64(2) + np.uint64(1)


def parent_ids(ids: np.ndarray, level: int) -> np.ndarray:
    """The level-``level`` ancestors of cell ids (s2sphere's ``CellId.parent``)."""
    lsb = np.uint64(1 << (2 * (MAX_LEVEL - level)))
    return (ids & ~(lsb - np.uint64(1)) & ~lsb) | lsb


def cell_level(ids: np.ndarray) -> np.ndarray:
    """The level of each cell id (from its lowest set bit)."""
    lowest = ids & (~ids + np.uint64(1))
    return MAX_LEVEL - (np.log2(lowest.astype(np.float64)).astype(np.int64) // 2)


@dataclass
class Partition:
    """Cells (level-mixed S2 cell ids) with their photo counts and mean photo locations, in class order."""

    cells: np.ndarray
    counts: np.ndarray
    lat_mean: np.ndarray
    lon_mean: np.ndarray

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def tokens(self) -> list[str]:
        return [s2sphere.CellId(int(cell)).to_token() for cell in self.cells]

    def classify(self, leaf_ids: np.ndarray) -> np.ndarray:
        """The class of each leaf cell id: the partition cell containing it, or -1."""
        levels = cell_level(self.cells)
        half = (np.uint64(1) << (2 * (MAX_LEVEL - levels)).astype(np.uint64)) - np.uint64(1)
        lo, hi = self.cells - half, self.cells + half  # the leaf range a cell covers
        order = np.argsort(lo)
        position = np.searchsorted(lo[order], leaf_ids, side="right") - 1
        candidate = order[np.clip(position, 0, len(order) - 1)]
        inside = (position >= 0) & (leaf_ids >= lo[candidate]) & (leaf_ids <= hi[candidate])
        return np.where(inside, candidate, -1)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's centre in degrees (s2sphere, once per cell)."""
        points = [s2sphere.LatLng.from_point(s2sphere.Cell(s2sphere.CellId(int(c))).get_center()) for c in self.cells]
        return np.array([p.lat().degrees for p in points]), np.array([p.lng().degrees for p in points])


def build_partition(lat: np.ndarray, lon: np.ndarray, t1: int = 10_000, t2: int = 50, min_level: int = 2,
                    max_level: int = 13) -> Partition:
    """PlaNet's adaptive partition: from level ``min_level``, split cells holding more than ``t1`` photos (up
    to ``max_level``), then drop cells holding fewer than ``t2``."""
    if not 0 <= min_level <= max_level <= MAX_LEVEL or t2 > t1:
        raise ValueError(f"need 0 <= min_level <= max_level <= 30 and t2 <= t1, got {min_level}, {max_level}, {t2}, {t1}")
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    leaves = cell_ids(lat, lon)
    active = np.arange(len(leaves))
    kept_cells, kept_members, largest = [], [], 0
    for level in range(min_level, max_level + 1):
        if not len(active):
            break
        parents = parent_ids(leaves[active], level)
        cells, inverse, counts = np.unique(parents, return_inverse=True, return_counts=True)
        split = (counts > t1) & (level < max_level)
        keep = ~split & (counts >= t2)
        largest = max(largest, int(counts[~split].max(initial=0)))
        for index in np.flatnonzero(keep):
            kept_cells.append(cells[index])
            kept_members.append(active[inverse == index])
        active = active[split[inverse]]
    if not kept_cells:
        raise ValueError(f"no S2 cell keeps t2={t2} of the {len(lat)} photos (the fullest unsplit cell holds "
                         f"{largest}); lower t2 to at most {largest}")
    order = np.argsort(np.array(kept_cells, dtype=np.uint64))
    cells = np.array(kept_cells, dtype=np.uint64)[order]
    members = [kept_members[i] for i in order]
    return Partition(
        cells=cells,
        counts=np.array([len(m) for m in members], dtype=np.int64),
        lat_mean=np.array([lat[m].mean() for m in members]),
        lon_mean=np.array([_mean_longitude(lon[m]) for m in members]),
    )


def _mean_longitude(lon: np.ndarray) -> float:
    """Circular mean, so a cell across the antimeridian does not average to 0."""
    radians = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean())))


def build_partitions(lat: np.ndarray, lon: np.ndarray, thresholds: Sequence[tuple[int, int]], min_level: int = 2,
                     max_level: int = 13) -> tuple[list[Partition], list[np.ndarray]]:
    """The hierarchical multi-partition: one partition per (t1, t2), coarsest first, and for each finer
    partition the index of every cell's enclosing cell in the next coarser one (-1 where that one dropped it)."""
    partitions = [build_partition(lat, lon, t1, t2, min_level, max_level)
                  for t1, t2 in sorted(thresholds, reverse=True)]
    parents = [partitions[p - 1].classify(partitions[p].cells) for p in range(1, len(partitions))]
    return partitions, parents


def write_partition(partition: Partition, path: Path) -> None:
    """Write the partition CSV (``class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class_label", "hex_id", "imgs_per_cell", "latitude_mean", "longitude_mean"])
        for label, (token, count, lat, lon) in enumerate(zip(partition.tokens, partition.counts, partition.lat_mean,
                                                              partition.lon_mean)):
            writer.writerow([label, token, int(count), f"{lat:.6f}", f"{lon:.6f}"])
    tmp.replace(path)


def read_partition(path: Path) -> Partition:
    """Read a partition CSV written by ``write_partition`` or by the published PlaNet-style partitions."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: partition file not found")
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames or []
    expected = {"class_label", "hex_id", "imgs_per_cell", "latitude_mean", "longitude_mean"}
    if not expected <= set(header):
        raise ValueError(f"{path}: expected the columns {sorted(expected)}, found {header}")
    if not rows:
        raise ValueError(f"{path}: the partition has no cells; delete it and rebuild it with a lower t2")
    rows.sort(key=lambda row: int(row["class_label"]))
    if [int(row["class_label"]) for row in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: class_label must run 0..{len(rows) - 1}")
    return Partition(
        cells=np.array([s2sphere.CellId.from_token(row["hex_id"]).id() for row in rows], dtype=np.uint64),
        counts=np.array([int(row["imgs_per_cell"]) for row in rows], dtype=np.int64),
        lat_mean=np.array([float(row["latitude_mean"]) for row in rows]),
        lon_mean=np.array([float(row["longitude_mean"]) for row in rows]),
    )
