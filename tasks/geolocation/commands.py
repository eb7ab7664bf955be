"""The geolocation package's subcommand ``partition`` (PlaNet's adaptive S2 partition of a geotagged CSV) and its
``mobilenets bench`` targets (``s2``, ``shards``). Imports nothing heavy until one runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets", "add_commands"]


def run_partition(args: argparse.Namespace) -> int:
    import numpy as np

    from mobilenets.tasks.geolocation.data import read_geotagged_csv
    from mobilenets.tasks.geolocation.partition import build_partitions, write_partition

    _, lat, lon, skipped = read_geotagged_csv(Path(args.csv), tuple(args.columns), args.skip_bad)
    if skipped:
        print(f"skipped {len(skipped)} rows with bad coordinates, e.g. {skipped[0]}")
    thresholds = [tuple(int(v) for v in pair.split(",")) for pair in args.thresholds]
    partitions, parents = build_partitions(lat, lon, thresholds, args.min_level, args.max_level)
    for (t1, t2), partition in zip(sorted(thresholds, reverse=True), partitions):
        path = Path(args.output) / f"partition_t1-{t1}_t2-{t2}.csv"
        write_partition(partition, path)
        print(f"{path}: {len(partition)} cells holding {int(partition.counts.sum())} of {len(lat)} photos")
    for level, parent in enumerate(parents, start=1):
        np.save(Path(args.output) / f"parents_{level}.npy", parent)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """``mobilenets partition``."""
    parser = subparsers.add_parser("partition", help="PlaNet's adaptive S2 partition of a geotagged CSV")
    parser.add_argument("csv", help="IMG_ID,LAT,LON rows")
    parser.add_argument("--output", default=".", help="folder for partition_t1-<t1>_t2-<t2>.csv files")
    parser.add_argument("--thresholds", nargs="+", default=["10000,50"],
                        help="t1,t2 pairs; several give the hierarchical multi-partition (parents_<k>.npy "
                        "maps each cell of the k-th finer partition to its enclosing coarser cell)")
    parser.add_argument("--min-level", type=int, default=2)
    parser.add_argument("--max-level", type=int, default=13)
    parser.add_argument("--columns", nargs=3, default=["IMG_ID", "LAT", "LON"])
    parser.add_argument("--skip-bad", action="store_true", help="skip rows with bad coordinates instead of failing")
    parser.set_defaults(handler=run_partition)


def _measure_s2(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.geolocation.bench import bench_s2

    return [bench_s2()]


def _measure_shards(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.geolocation.bench import bench_shards

    return [bench_shards(num_workers=args.num_workers)]


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench s2`` and ``bench shards``."""
    add_bench_target(targets, "s2", "S2 cell ids per second vs s2sphere", _measure_s2)
    shards = add_bench_target(targets, "shards", "geolocation training data from image files vs WebDataset shards",
                              _measure_shards)
    shards.add_argument("--num-workers", type=int, default=2, help="loader workers")
