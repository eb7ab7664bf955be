"""The detection package's subcommand ``evaluate-coco`` and its ``mobilenets bench`` targets (``detection``,
``detection-train``, ``gpu``). Imports nothing heavy until one runs, so ``mobilenets --help`` answers at once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mobilenets.core.timing import add_bench_target

__all__ = ["add_bench_targets", "add_commands"]


def run_evaluate_coco(args: argparse.Namespace) -> int:
    import json

    from mobilenets.tasks.detection.data import load_coco
    from mobilenets.tasks.detection.metrics import coco_evaluate

    ground_truth = load_coco(Path(args.gt))
    try:
        detections = json.loads(Path(args.dt).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{args.dt}: cannot read detections: {error}") from None
    for name, value in coco_evaluate(ground_truth, detections).items():
        print(f"{name:<10} {value:.4f}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """``mobilenets evaluate-coco``."""
    parser = subparsers.add_parser("evaluate-coco", help="COCOeval (bbox) of any detections JSON: the 12 stats")
    parser.add_argument("--gt", required=True, help="COCO instances JSON (ground truth)")
    parser.add_argument("--dt", required=True, help="COCO results JSON (a list of detections)")
    parser.set_defaults(handler=run_evaluate_coco)


def _measure_latency(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.detection.bench import bench_detection

    return [bench_detection(rounds=args.rounds, threads=args.threads)]


def _measure_training(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.detection.bench import bench_detection_training, training_table

    rows = bench_detection_training(config=args.config, steps=args.steps, batch_size=args.batch_size,
                                    threads=args.threads)
    return [training_table(rows)]


def _measure_gpu(args: argparse.Namespace) -> list[Any]:
    from mobilenets.tasks.detection.bench_gpu import bench_gpu

    tables = bench_gpu()
    if tables is None:
        print("mobilenets bench gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured")
        return []
    return tables


def add_bench_targets(targets: argparse._SubParsersAction) -> None:
    """``mobilenets bench detection``, ``detection-train`` and ``gpu``."""
    latency = add_bench_target(targets, "detection", "end-to-end SSD latency at batch 1 vs torchvision's SSDLite",
                               _measure_latency)
    latency.add_argument("--rounds", type=int, default=20)
    training = add_bench_target(targets, "detection-train", "mAP after equal training steps: our SSD300 and SSDLite "
                                "vs torchvision's SSDLite recipe (on our body, and on MobileNet v3)", _measure_training)
    training.add_argument("--config", default="demo/detection.yaml",
                          help="the detection config whose model, augmentation and synthetic data our rows use")
    training.add_argument("--steps", type=int, default=100, help="optimizer steps per model")
    training.add_argument("--batch-size", type=int, help="batch size (default: the config's)")
    add_bench_target(targets, "gpu", "on one CUDA GPU: training images/s eager and compiled vs timm, SSD training vs "
                     "torchvision's SSDLite, the input pipeline, peak memory (under 10 minutes; without a GPU it "
                     "says so and exits 0)", _measure_gpu)
