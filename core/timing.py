"""The one timing harness every benchmark uses: warm-up rounds not counted, the median of the counted ones, and
rounds that alternate between the things compared so that a slow spell of the machine falls on all of them; and
``add_bench_target``, through which each package adds the ``mobilenets bench`` targets it knows how to measure."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Mapping

__all__ = ["SAVE_HELP", "add_bench_target", "blocked_medians", "interleaved_medians"]

#: ``--save``'s help, for every command that measures
SAVE_HELP = ("also add the tables to this results file (JSON, made if absent), each with the command, commit, CPU, "
             "cores, torch and date; a table of the same key is replaced (the docs render results/*.json)")


def interleaved_medians(work: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """The median seconds of each callable over ``rounds`` rounds, each round calling every callable once in
    turn, after ``warmup`` rounds that are not counted."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got {rounds} and {warmup}")
    times: dict[str, list[float]] = {name: [] for name in work}
    for round_index in range(warmup + rounds):
        for name, call in work.items():
            start = time.perf_counter()
            call()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def blocked_medians(work: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                    passes: int = 3) -> dict[str, float]:
    """As ``interleaved_medians``, but each callable runs a block of calls in a row (its own warm-up first), the
    blocks alternating over ``passes``: for runtimes whose thread pools spin while waiting (PyTorch's,
    onnxruntime's), which alternating single calls would slow down."""
    if rounds < 1 or warmup < 0 or passes < 1:
        raise ValueError(f"rounds and passes must be >= 1 and warmup >= 0, got {rounds}, {passes} and {warmup}")
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(passes):
        for name, call in work.items():
            time.sleep(0.05)  # let the previous runtime's threads stop spinning
            for round_index in range(warmup + max(1, rounds // passes)):
                start = time.perf_counter()
                call()
                if round_index >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def add_bench_target(targets: argparse._SubParsersAction, name: str, help: str,
                     measure: Callable[[argparse.Namespace], list[Any]]) -> argparse.ArgumentParser:
    """Add ``mobilenets bench NAME``: its parser (with the options every target takes: ``--threads``, ``--format``,
    ``--save``) calling ``measure(args)``, which returns the tables measured (none where there is nothing to
    measure, having said why). The package that knows what is measured adds its own options to the parser."""
    parser = targets.add_parser(name, help=help, description=help)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the runtimes compared")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--save", metavar="FILE", help=SAVE_HELP)
    parser.set_defaults(measure=measure)
    return parser
