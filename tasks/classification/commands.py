"""The classification package's ``mobilenets bench`` targets: a training step against timm's (``train``), and
ImageNet input against what a training step consumes (``data``). Imports nothing heavy until one runs."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets"]


def _measure_training(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.classification.bench import bench_training, training_profile

    if args.profile:
        return [training_profile(batch_size=args.batch_sizes[-1], threads=args.threads, compile=args.compile)]
    return [bench_training(batch_size=args.batch_sizes[-1], rounds=args.rounds, threads=args.threads,
                           compile=args.compile)]


def _measure_data(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.classification.bench import bench_data

    return [bench_data(root=args.root, batch_size=args.batch_sizes[-1], num_workers=args.num_workers,
                       threads=args.threads)]


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench train`` and ``bench data``."""
    train = add_bench_target(targets, "train", "a training step of the 1.0 classifier vs timm's, NCHW and "
                             "channels-last (and compiled with --compile)", _measure_training)
    train.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="the batch (the last one given)")
    train.add_argument("--rounds", type=int, default=20)
    train.add_argument("--compile", action="store_true",
                       help="also torch.compile ours and timm's (minutes of compiling on a CPU)")
    train.add_argument("--profile", action="store_true",
                       help="where our step's time goes instead (torch.profiler's top operators; with --compile, of "
                       "the compiled step)")
    data = add_bench_target(targets, "data", "ImageNet JPEG decoding per core (PIL, TorchCodec, torchvision.io) and "
                            "the training loader, beside a training step", _measure_data)
    data.add_argument("--root", help="an ImageNet folder (default: synthetic, real-sized images)")
    data.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="the batch (the last one given)")
    data.add_argument("--num-workers", type=int, help="loader workers (default: the data module's)")
