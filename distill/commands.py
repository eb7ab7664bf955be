"""Distillation's subcommand ``student`` (a distiller's student as a checkpoint of its own task) and its
``mobilenets bench distill`` target (epochs without and with the teacher-output cache). Imports nothing heavy
until one runs."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets", "add_commands"]


def _run_student(args: argparse.Namespace) -> int:
    from mobilenets.distill import save_student

    print(f"wrote {save_student(args.checkpoint, args.output)}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """``mobilenets student``."""
    parser = subparsers.add_parser("student", help="a distillation checkpoint's student as a checkpoint of its task")
    parser.add_argument("checkpoint", help="a DistillationTask checkpoint (.ckpt)")
    parser.add_argument("output", help="the student's checkpoint to write (.ckpt)")
    parser.set_defaults(handler=_run_student)


def _measure(args: argparse.Namespace) -> list[Any]:
    from mobilenets.distill.bench import bench_teacher_cache

    return [bench_teacher_cache(threads=args.threads)]


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench distill``."""
    add_bench_target(targets, "distill", "distillation epochs without and with the teacher-output cache", _measure)
