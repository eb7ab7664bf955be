"""Deployment speed (``mobilenets bench deploy``): latency and throughput of the paper's 16 ImageNet models
(alpha x resolution) in PyTorch eager, onnxruntime fp32 and int8, and OpenVINO int8 (``mobilenets export``'s
default int8 runtime), beside timm's ``mobilenetv1_100`` exported and timed the same way in the same run.

Each runtime is timed in blocks of rounds after a warm-up, with a fixed thread count, and the median of the
rounds is reported. A benchmark, never a test.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from mobilenets.backbone import profile_model
from mobilenets.backbone.profile import PAPER_IMAGENET
from mobilenets.core.tables import Table
from mobilenets.core.timing import blocked_medians
from mobilenets.deploy.evaluate import OnnxRunner, quantize_int8
from mobilenets.deploy.export import inference_model, save_onnx, trace_to_onnx
from mobilenets.deploy.runtimes import FORMATS, runtime
from mobilenets.tasks.data.loading import build_from_config
from mobilenets.tasks.export import TaskExport

__all__ = ["DeployRow", "bench_deploy", "bench_int8_candidates", "deploy_plots", "deploy_table", "int8_table",
           "time_runtimes"]

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


@dataclass
class DeployRow:
    """One model's timings: ms per image at batch 1, images per second at the throughput batch."""

    model: str
    alpha: float
    resolution: int
    macs_m: float
    eager_ms: float
    eager_layout: str
    onnx_ms: float
    int8_ms: float
    eager_ips: float
    onnx_ips: float
    int8_ips: float
    openvino_int8_ms: float
    openvino_int8_ips: float


#: the config whose classifier the benchmarks export across the family (1000 classes, random weights)
CLASSIFIER_CONFIG = "paper/imagenet.yaml"


def _our_classifier(alpha: float, resolution: int, num_classes: int = 1000) -> TaskExport:
    task = build_from_config(CLASSIFIER_CONFIG, "model", num_classes=num_classes, backbone={"alpha": alpha},
                             resolution=resolution)
    return inference_model(task)


def _timm_classifier(resolution: int, num_classes: int = 1000) -> TaskExport:
    """timm's mobilenetv1_100 inside our classifier's export, with timm's normalisation: the same softmax / top-k
    around the reference network (a fair comparison)."""
    import timm

    export = _our_classifier(1.0, resolution, num_classes)
    export.network = timm.create_model("mobilenetv1_100", pretrained=False, num_classes=num_classes).eval()
    config = export.network.pretrained_cfg
    export.mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    export.std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    export.task_class = "timm.mobilenetv1_100"
    return export


def time_runtimes(runtimes: dict[str, Callable[[Tensor], Any]], images: Tensor, rounds: int, warmup: int,
                   passes: int = 3) -> dict[str, float]:
    """Median ms of each runtime on ``images``, timed in blocks (``blocked_medians``)."""
    with torch.inference_mode():
        seconds = blocked_medians({name: partial(run, images) for name, run in runtimes.items()}, rounds, warmup,
                                  passes)
    return {name: median * 1000 for name, median in seconds.items()}


def _bench_model(name: str, export: TaskExport, alpha: float, workdir: Path, batch_size: int, rounds: int,
                 warmup: int, threads: int) -> DeployRow:
    size = export.resolution
    fp32 = save_onnx(trace_to_onnx(export, size, export.output_names), workdir / f"{name}.onnx")
    rng = np.random.default_rng(0)
    calibration = [rng.random((8, 3, size, size), dtype=np.float32) for _ in range(2)]
    int8 = quantize_int8(fp32, workdir / f"{name}.int8.onnx", calibration)
    openvino = runtime("openvino")
    openvino_int8 = openvino.write(export, workdir / f"{name}.int8.xml", fp32, calibration)
    channels_last = copy.deepcopy(export).to(memory_format=torch.channels_last)
    runtimes: dict[str, Callable[[Tensor], Any]] = {
        "NCHW": export,
        "channels_last": lambda x: channels_last(x.contiguous(memory_format=torch.channels_last)),
        "onnx": OnnxRunner(fp32, threads), "int8": OnnxRunner(int8, threads),
        "openvino_int8": openvino.runner(openvino_int8, export, threads),
    }
    single = time_runtimes(runtimes, torch.rand(1, 3, size, size), rounds, warmup)
    batch = time_runtimes(runtimes, torch.rand(batch_size, 3, size, size), max(3, rounds // 5), 1)
    layout = min(("NCHW", "channels_last"), key=lambda key: single[key])  # the faster eager layout at batch 1
    macs = profile_model(export.network, size).macs / 1e6
    return DeployRow(name, alpha, size, round(macs, 1), single[layout], layout, single["onnx"], single["int8"],
                     1000 * batch_size / batch[layout], 1000 * batch_size / batch["onnx"],
                     1000 * batch_size / batch["int8"], single["openvino_int8"],
                     1000 * batch_size / batch["openvino_int8"])


def bench_deploy(alphas: tuple[float, ...] = ALPHAS, resolutions: tuple[int, ...] = RESOLUTIONS,
                 batch_size: int = 32, rounds: int = 30, warmup: int = 3, threads: int = 2,
                 reference: bool = True) -> list[DeployRow]:
    """Time every alpha x resolution 1000-class classifier (random weights: speed does not depend on them),
    and timm's mobilenetv1_100 at each resolution as the reference rows."""
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in resolutions:
            if reference:
                try:
                    timm_model = _timm_classifier(resolution)
                except ImportError:
                    raise SystemExit("the deploy benchmark's reference is timm: pip install 'mobilenet-suite[dev]'")
                rows.append(_bench_model(f"timm-1.0-{resolution}", timm_model, 1.0, Path(tmp), batch_size, rounds,
                                         warmup, threads))
            for alpha in alphas:
                rows.append(_bench_model(f"ours-{alpha}-{resolution}", _our_classifier(alpha, resolution), alpha,
                                         Path(tmp), batch_size, rounds, warmup, threads))
    return rows


def bench_int8_candidates(alpha: float = 1.0, resolution: int = 224, rounds: int = 60, warmup: int = 5,
                          threads: int = 2) -> dict[str, dict[str, float]]:
    """Batch-1 ms of every fp32 / int8 pair on one 1000-class classifier, timed side by side in one process:
    onnxruntime (int8 with per-channel and with per-tensor weights) and each installed runtime of ``--format``
    (``mobilenets.deploy.runtimes``) with its own int8 flow, all calibrated on the same random images. Returns
    ``{candidate: {"fp32": ms, "int8": ms}}``; runtimes not installed are left out."""
    torch.set_num_threads(threads)
    export = _our_classifier(alpha, resolution)
    rng = np.random.default_rng(0)
    calibration = [rng.random((8, 3, resolution, resolution), dtype=np.float32) for _ in range(2)]
    runners: dict[str, Callable[[Tensor], Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = save_onnx(trace_to_onnx(export, resolution, export.output_names), Path(tmp) / "model.onnx")
        runners["onnxruntime/fp32"] = OnnxRunner(fp32, threads)
        for weights, per_channel in (("per-channel", True), ("per-tensor", False)):
            int8 = quantize_int8(fp32, Path(tmp) / f"model.{weights}.onnx", calibration, per_channel=per_channel)
            runners[f"onnxruntime ({weights} weights)/int8"] = OnnxRunner(int8, threads)
        for name in FORMATS:
            try:
                chosen = runtime(name)
            except ValueError:  # not installed: that candidate is left out
                continue
            for precision, batches in (("fp32", None), ("int8", calibration)):
                path = chosen.write(export, Path(tmp) / f"model.{precision}{chosen.suffix}", fp32, batches)
                runners[f"{name}/{precision}"] = chosen.runner(path, export, threads)
        times = time_runtimes(runners, torch.rand(1, 3, resolution, resolution), rounds, warmup)
    results: dict[str, dict[str, float]] = {}
    for key, ms in times.items():
        candidate, precision = key.rsplit("/", 1)
        results.setdefault(candidate, {})[precision] = ms
    for candidate in [c for c in results if c.startswith("onnxruntime (")]:  # one fp32 for both ORT int8 graphs
        results[candidate]["fp32"] = results["onnxruntime"]["fp32"]
    del results["onnxruntime"]
    return results


def int8_table(results: dict[str, dict[str, float]], alpha: float, resolution: int, threads: int) -> Table:
    """The candidates as a table: each one's speed-up over onnxruntime fp32 (the ONNX export's runtime) and over
    its own fp32, fastest int8 first."""
    baseline = results["onnxruntime (per-channel weights)"]["fp32"]  # the session both onnxruntime rows share
    rows = [[candidate, f"{times['fp32']:.2f}", f"{times['int8']:.2f}", f"{baseline / times['int8']:.2f}x",
             f"{times['fp32'] / times['int8']:.2f}x"]
            for candidate, times in sorted(results.items(), key=lambda item: item[1]["int8"])]
    return Table(
        key=f"bench_int8_{alpha}-{resolution}",
        title=f"int8 candidates, ours-{alpha}-{resolution}, batch 1, {threads} threads, median ms",
        columns=["runtime", "fp32 ms", "int8 ms", "int8 vs onnxruntime fp32", "int8 vs own fp32"],
        rows=rows,
        notes=["Each runtime's own post-training int8 flow, calibrated on the same images; OpenVINO runs at f32 "
               "inference precision. Accuracy of each on the demo tasks: `mobilenets export --format ...`."],
    )


def deploy_table(rows: list[DeployRow], threads: int, batch_size: int) -> Table:
    """The rows as a table, with each model's int8 speed-ups over onnxruntime fp32 and, for ours at 1.0, the
    ratios to timm."""
    timm_rows = {row.resolution: row for row in rows if row.model.startswith("timm")}
    table_rows, notes = [], []
    for row in rows:
        reference = timm_rows.get(row.resolution) if row.alpha == 1.0 and not row.model.startswith("timm") else None
        versus = (f"{row.onnx_ms / reference.onnx_ms:.3f} / {row.eager_ms / reference.eager_ms:.3f}"
                  if reference else "")
        table_rows.append([row.model, row.macs_m, f"{row.eager_ms:.2f} ({row.eager_layout})", f"{row.onnx_ms:.2f}",
                           f"{row.int8_ms:.2f}", f"{row.onnx_ms / row.int8_ms:.2f}x", f"{row.openvino_int8_ms:.2f}",
                           f"{row.onnx_ms / row.openvino_int8_ms:.2f}x", f"{row.eager_ips:.0f}",
                           f"{row.onnx_ips:.0f}", f"{row.int8_ips:.0f}", f"{row.openvino_int8_ips:.0f}", versus])
    notes.append("ours / timm: our time over timm's at the same size (onnx fp32 / eager); below 1 is faster. "
                 "Eager runs the export's graph (BN folded) in the faster layout at batch 1.")
    return Table(
        key="bench_deploy",
        title=f"Deployment latency (batch 1, ms) and throughput (batch {batch_size}, img/s), {threads} threads, median",
        columns=["model", "MACs (M)", "eager ms", "onnx fp32 ms", "onnx int8 ms", "int8 speed-up",
                 "openvino int8 ms", "openvino int8 speed-up", "eager img/s", "fp32 img/s", "int8 img/s",
                 "openvino int8 img/s", "ours / timm (fp32 / eager)"],
        rows=table_rows,
        notes=notes,
    )


def deploy_plots(rows: list[DeployRow], output: str | Path) -> list[Path]:
    """Latency vs MACs for each runtime, and the paper's ImageNet top-1 vs our batch-1 latency (the paper's
    Figure 4 with latency for MACs) where the paper gives the model's accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    ours = [row for row in rows if row.model.startswith("ours")]
    runtimes = (("eager_ms", "PyTorch eager"), ("onnx_ms", "onnxruntime fp32"), ("int8_ms", "onnxruntime int8"),
                ("openvino_int8_ms", "OpenVINO int8"))
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, label in runtimes:
        axes.scatter([r.macs_m for r in ours], [getattr(r, key) for r in ours], label=label)
    for row in rows:
        if row.model.startswith("timm"):
            axes.scatter([row.macs_m], [row.onnx_ms], marker="x", color="black")
    axes.scatter([], [], marker="x", color="black", label="timm mobilenetv1_100, onnxruntime fp32")
    axes.set(xscale="log", yscale="log", xlabel="MACs (millions, log scale)", ylabel="batch-1 latency (ms, log)",
             title="Latency vs MACs, alpha {1, .75, .5, .25} x {224, 192, 160, 128}")
    axes.legend(fontsize=8)
    paths = [output / "latency_vs_macs.png"]
    figure.savefig(paths[0], dpi=120, bbox_inches="tight")
    plt.close(figure)
    known = [(row, PAPER_IMAGENET[(row.alpha, row.resolution)][0]) for row in ours
             if (row.alpha, row.resolution) in PAPER_IMAGENET]
    if known:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for key, label in runtimes:
            axes.scatter([getattr(r, key) for r, _ in known], [top1 for _, top1 in known], label=label)
        for row, top1 in known:
            axes.annotate(f"{row.alpha}-{row.resolution}", (row.openvino_int8_ms, top1), fontsize=7)
        axes.set(xscale="log", xlabel="batch-1 latency (ms, log scale)",
                 ylabel="ImageNet top-1 (%), the paper's Tables 6-7", title="Accuracy vs latency")
        axes.legend(fontsize=8)
        paths.append(output / "accuracy_vs_latency.png")
        figure.savefig(paths[1], dpi=120, bbox_inches="tight")
        plt.close(figure)
    return paths
