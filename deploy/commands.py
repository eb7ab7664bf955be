"""Deployment's ``mobilenets bench`` targets: the exported family across runtimes (``deploy``), every int8
candidate side by side (``int8``), and ``mobilenets serve`` under concurrent clients (``serve``). Imports nothing
heavy until one runs."""

from __future__ import annotations

import argparse
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets"]


def _measure_deploy(args: argparse.Namespace) -> list[Any]:
    from mobilenets.deploy.bench import bench_deploy, deploy_plots, deploy_table

    batch_size = args.batch_sizes[-1]
    rows = bench_deploy(alphas=tuple(args.alphas), resolutions=tuple(args.resolutions), batch_size=batch_size,
                        rounds=args.rounds, threads=args.threads)
    if args.plot:
        for path in deploy_plots(rows, args.plot):
            print(f"wrote {path}")
    return [deploy_table(rows, args.threads, batch_size)]


def _measure_int8(args: argparse.Namespace) -> list[Any]:
    from mobilenets.deploy.bench import bench_int8_candidates, int8_table

    return [int8_table(bench_int8_candidates(alpha, resolution, rounds=args.rounds, threads=args.threads),
                       alpha, resolution, args.threads)
            for resolution in args.resolutions for alpha in args.alphas]


def _measure_serve(args: argparse.Namespace) -> list[Any]:
    from mobilenets.deploy.serve import bench_serve

    return [bench_serve(requests=args.rounds, threads=args.threads)]


def _family(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25], help="widths")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 192, 160, 128], help="input sizes")


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench deploy``, ``int8`` and ``serve``."""
    deploy = add_bench_target(targets, "deploy", "PyTorch, onnxruntime fp32 and int8, OpenVINO int8 over alpha x "
                              "resolution, timm's export as the reference", _measure_deploy)
    _family(deploy)
    deploy.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32],
                        help="latency at batch 1; throughput at the last one given")
    deploy.add_argument("--rounds", type=int, default=20)
    deploy.add_argument("--plot", help="a folder for latency_vs_macs.png and accuracy_vs_latency.png")
    int8 = add_bench_target(targets, "int8", "every int8 candidate (onnxruntime per-channel / per-tensor, LiteRT, "
                            "ExecuTorch, OpenVINO) side by side at batch 1, for each --alphas x --resolutions model",
                            _measure_int8)
    _family(int8)
    int8.add_argument("--rounds", type=int, default=20)
    serve = add_bench_target(targets, "serve", "mobilenets serve under 1, 8 and 32 concurrent clients, batching on "
                             "and off", _measure_serve)
    serve.add_argument("--rounds", type=int, default=20, help="requests per row")
