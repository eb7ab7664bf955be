"""The scenes package's own subcommand, added through the task registry's ``commands`` room:
``mobilenets scenes-count ROOT`` prints the images per split and scene of a scenes tree."""

import argparse
from pathlib import Path

from scenes.synthetic import SCENES


def _count(args: argparse.Namespace) -> int:
    for split in ("train", "test"):
        counts = {scene: len(list((Path(args.root) / split / scene).glob("*.png"))) for scene in SCENES}
        print(f"{split}: " + ", ".join(f"{scene} {count}" for scene, count in counts.items()))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scenes-count", help="images per split and scene of a scenes tree")
    parser.add_argument("root", help="a tree written by mobilenets synth scenes")
    parser.set_defaults(handler=_count)
