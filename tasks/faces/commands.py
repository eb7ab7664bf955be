"""The faces package's subcommand ``align`` (a folder tree of photos into aligned face crops, MTCNN), its
``mobilenets bench faces`` target, and the alignment options the face embedding's commands share. Imports
nothing heavy until one runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets", "add_commands", "alignment_arguments", "alignment_from"]


def alignment_arguments(parser: argparse.ArgumentParser) -> None:
    """The alignment options every face command takes (``align``, and ``verify`` / ``gallery`` / ``identify``
    with ``--align``)."""
    parser.add_argument("--size", type=int, default=160, help="crop side in pixels (default 160, FaceNet's)")
    parser.add_argument("--margin", type=int, default=32, help="context around the face, pixels over both sides")
    parser.add_argument("--method", choices=["similarity", "box"], default="similarity",
                        help="similarity: five landmarks onto a canonical template; box: MTCNN's box plus margin")
    parser.add_argument("--min-face-size", type=int, default=20, help="smallest face side the detector looks for")


def alignment_from(args: argparse.Namespace) -> Any:
    """The ``Alignment`` the options describe."""
    from mobilenets.tasks.faces.alignment import Alignment

    return Alignment(size=args.size, margin=args.margin, method=args.method, min_face_size=args.min_face_size)


def run_align(args: argparse.Namespace) -> int:
    from mobilenets.tasks.faces.alignment import align_tree

    summary = align_tree(Path(args.source), Path(args.destination), alignment_from(args), all_faces=args.all_faces,
                         skip_bad=args.skip_bad, draw=Path(args.draw) if args.draw else None)
    print(f"{summary.images} images, {summary.crops} face crops written to {args.destination} (faces.csv lists "
          f"boxes, landmarks and scores); {len(summary.no_face)} without a face (listed in no_face.txt)"
          + (f"; {len(summary.skipped)} unreadable skipped, e.g. {summary.skipped[0]}" if summary.skipped else ""))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """``mobilenets align``."""
    parser = subparsers.add_parser("align", help="detect and align the faces in a folder tree of photos (MTCNN)")
    parser.add_argument("source", help="a folder tree of photos")
    parser.add_argument("destination", help="the same tree of aligned crops, with faces.csv and no_face.txt")
    alignment_arguments(parser)
    parser.add_argument("--all-faces", action="store_true",
                        help="a crop per face (<stem>_<k>); default: the photo's main face only")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count unreadable images instead of stopping")
    parser.add_argument("--draw", help="a folder for each photo with its faces' boxes, scores and landmarks drawn")
    parser.set_defaults(handler=run_align)


def _measure(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.faces.bench import bench_faces

    return [bench_faces(rounds=args.rounds, threads=args.threads)]


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench faces``."""
    parser = add_bench_target(targets, "faces", "MTCNN face detection vs the mtcnn package (TensorFlow)", _measure)
    parser.add_argument("--rounds", type=int, default=20)
