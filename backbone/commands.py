"""The backbone's ``mobilenets bench`` target: inference against timm's ``mobilenetv1_100``. Imports nothing heavy
until it runs."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets"]


def _measure(args: argparse.Namespace) -> list[Any]:
    from mobilenets.backbone.bench import bench_backbone, bench_table

    rows = bench_backbone(batch_sizes=tuple(args.batch_sizes), rounds=args.rounds, threads=args.threads,
                          compile=args.compile)
    return [bench_table(rows, args.threads)]


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench backbone``."""
    parser = add_bench_target(targets, "backbone", "inference vs timm's mobilenetv1_100: eager, BN folded, and "
                              "with --compile both compiled", _measure)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--compile", action="store_true",
                        help="also torch.compile ours and timm's (minutes of compiling on a CPU)")
