"""``mobilenets export``: a task checkpoint to deployable files (ONNX, LiteRT, ExecuTorch, OpenVINO; fp32 and
int8; a torch.export program), checked.

From the checkpoint alone (its task, weights, names and data module are all recorded in it): export, quantize
with calibration images from the training split, compare every runtime with PyTorch on real validation images,
and score PyTorch and every fp32 and int8 file with the task's own metric on the validation split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from mobilenets.core.errors import BadRecordError, SettingError
from mobilenets.core.io import replacing, write_text
from mobilenets.deploy.bench import time_runtimes
from mobilenets.deploy.evaluate import OnnxRunner, TorchRunner, calibration_images, evaluate, parity, quantize_int8
from mobilenets.deploy.export import export_onnx, inference_model
from mobilenets.deploy.runtimes import runtime
from mobilenets.tasks.base import BaseTask
from mobilenets.tasks.data.loading import load_datamodule
from mobilenets.tasks.export import export_batches

__all__ = ["export_checkpoint", "export_program", "report_markdown"]


def export_program(task: Any, path: str | Path) -> Path:
    """The inference graph as a ``torch.export`` program (``.pt2``, dynamic batch), for PyTorch runtimes
    (ExecuTorch, AOTInductor). Detection's program ends before NMS: apply ``DetectionExport.nms`` to its two
    outputs (``anchor_boxes``, ``class_scores``)."""
    export = inference_model(task)
    size = export.resolution
    program = torch.export.export(export, (torch.rand(2, 3, size, size),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    with replacing(path) as partial:
        torch.export.save(program, partial)
    return Path(path)


def _latency_ms(runners: dict[str, Any], size: int, threads: int, rounds: int = 20) -> dict[str, float]:
    torch.set_num_threads(threads)
    return time_runtimes(runners, torch.rand(1, 3, size, size), rounds, warmup=3)


def export_checkpoint(checkpoint: str | Path, task: BaseTask, output: str | Path, int8: bool = True,
                      pt2: bool = False, dynamic_size: bool = False, evaluate_data: bool = True, calibration: int = 8,
                      threads: int = 2, data_overrides: dict[str, Any] | None = None,
                      formats: Sequence[str] = ("onnx", "openvino")) -> dict[str, Any]:
    """Export a checkpoint and measure what the export costs in accuracy and gains in speed, in every format.

    Args:
        checkpoint: the checkpoint ``task`` was read from (its data module is recorded there).
        task: the trained task to export (of a distillation checkpoint, its student).
        output: folder for ``model.onnx`` (always: the portable file, and OpenVINO's source), ``model.int8.onnx``,
            ``model.tflite``, ``model.pte``, ``model.xml`` (each with its ``.int8`` twin), ``model.pt2`` and
            ``export_report.json``.
        int8: also write each format's int8 model, through that runtime's own post-training quantization.
        pt2: also write the ``torch.export`` program.
        dynamic_size: let the ONNX model take any height and width (not detection).
        evaluate_data: read the checkpoint's data for the parity checks, calibration and metrics; without it,
            calibration uses random images and nothing is scored.
        calibration: training batches used to calibrate int8.
        threads: runtime and PyTorch threads for the latency column.
        data_overrides: data module arguments to change (``root`` where the data now lives, ``num_workers``).
        formats: ``onnx`` (always), ``openvino`` (default too: the fastest int8 on Intel Xeon CPUs, where
            onnxruntime's is as fast on AMD EPYC ones; ``mobilenets bench int8``), ``tflite`` (LiteRT), ``executorch``
            (XNNPACK); see ``mobilenets.deploy.runtimes``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    others = [runtime(name) for name in dict.fromkeys(formats) if name != "onnx"]  # refuses missing extras first
    export = inference_model(task)
    size = export.resolution
    datamodule = None
    if evaluate_data:
        datamodule = load_datamodule(checkpoint, **{"num_workers": 0, **(data_overrides or {})})
        try:  # read the data now, before the export's slow parts
            datamodule.prepare_data()
            datamodule.setup("validate")
        except (FileNotFoundError, BadRecordError) as error:
            raise SettingError(f"{checkpoint} holds a {type(task).__name__} trained on {type(datamodule).__name__} "
                               f"data, which cannot be read there ({error}); point --data-root at such data, or "
                               f"pass --no-data") from None
    files = {"onnx": export_onnx(task, output / "model.onnx", dynamic_size)}
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "task": export.task_class, "resolution": size}
    if int8:
        if datamodule is not None:
            batches = calibration_images(datamodule, size, calibration)
        else:
            generator = torch.Generator().manual_seed(0)
            batches = [torch.rand(8, 3, size, size, generator=generator).numpy() for _ in range(calibration)]
        files["onnx_int8"] = quantize_int8(files["onnx"], output / "model.int8.onnx", batches)
    runners: dict[str, Any] = {"pytorch": TorchRunner(export)}
    runners.update({name: OnnxRunner(path, threads) for name, path in files.items()})
    for chosen in others:
        for suffix, data in [("", None), *([("_int8", batches)] if int8 else [])]:
            path = chosen.write(export, output / f"model{suffix.replace('_', '.')}{chosen.suffix}", files["onnx"], data)
            files[chosen.name + suffix] = path
            runners[chosen.name + suffix] = chosen.runner(path, export, threads)
    if pt2:
        files["pt2"] = export_program(task, output / "model.pt2")
    if datamodule is not None:
        loader = datamodule.val_dataloader()  # several (a multi-task model's data): the first one's
        first = next(export_batches(loader[0] if isinstance(loader, list) else loader, size))["image"]
        report["parity"] = {name: parity(export, run, first) for name, run in runners.items() if name != "pytorch"}
        report["metrics"] = {name: evaluate(run, export, task, datamodule) for name, run in runners.items()}
    if export.fixed_cost:  # NMS's time depends on how many boxes survive: not timed
        report["latency_ms"] = _latency_ms(runners, size, threads)
    report["files"] = {name: str(path) for name, path in files.items()}
    write_text(output / "export_report.json", json.dumps(report, indent=2))
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The export report as the tables ``mobilenets export`` prints."""
    lines = [f"### Export of {report['checkpoint']} ({report['task']}, {report['resolution']} px)", ""]
    for name, diffs in report.get("parity", {}).items():
        lines += [f"{name} vs PyTorch on a validation batch: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())]
    lines += [""] if "parity" in report else []
    metrics, latency = report.get("metrics", {}), report.get("latency_ms", {})
    runtimes = list(metrics or latency)
    names = sorted({name for values in metrics.values() for name in values})
    columns = ["runtime", *names, *(["batch-1 ms"] if latency else [])]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for runner in runtimes:
        cells = [f"{metrics[runner][name]:.4f}" for name in names] if metrics else []
        cells += [f"{latency[runner]:.2f}"] if latency else []
        lines.append("| " + " | ".join([runner, *cells]) + " |")
    lines += ["", "files: " + ", ".join(report["files"].values())]
    return "\n".join(lines) + "\n"
