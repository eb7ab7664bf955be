"""Running exported models: onnxruntime sessions, parity with PyTorch, int8 quantization, and the task metric of
an exported model on the task's own validation data.

A *runner* is anything that maps a batch of images in [0, 1] (N, 3, S, S) to the export's outputs as numpy
arrays: ``TorchRunner`` (the PyTorch inference graph) or ``OnnxRunner`` (an onnxruntime session). The same
evaluation code scores both, so PyTorch, fp32 ONNX and int8 ONNX are compared like for like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from mobilenets.tasks.export import TaskExport, export_batches

__all__ = ["OnnxRunner", "TorchRunner", "calibration_images", "evaluate", "parity", "quantize_int8"]

Runner = Callable[[Tensor], tuple[np.ndarray, ...]]


class TorchRunner:
    """The PyTorch inference graph as a runner (detection: with its PyTorch NMS)."""

    def __init__(self, export: TaskExport) -> None:
        self.export = export

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[np.ndarray, ...]:
        return tuple(output.numpy() for output in self.export.run(images))


class OnnxRunner:
    """An onnxruntime CPU session over an exported file, with a fixed number of threads."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3  # no warnings about hardware-specific graph rewrites
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
        array = images.numpy() if isinstance(images, Tensor) else images
        return tuple(self.session.run(None, {"images": np.ascontiguousarray(array, dtype=np.float32)}))


def evaluate(run: Runner, export: TaskExport, task: Any, datamodule: Any, stage: str = "val") -> dict[str, float]:
    """The task's own validation metric of ``run``'s outputs over the data module's ``stage`` split
    (``task.evaluate_export``), so PyTorch, fp32 ONNX and int8 ONNX are scored by the same code."""
    datamodule.setup("validate")
    with torch.no_grad():
        return task.evaluate_export(run, export, datamodule, stage)


def parity(export: TaskExport, runner: Runner, images: Tensor) -> dict[str, float]:
    """How far ``runner`` (an exported file) is from the PyTorch graph on ``images`` (``export.compare``)."""
    return export.compare(TorchRunner(export)(images), runner(images))


def calibration_images(datamodule: Any, size: int, batches: int, seed: int = 0) -> list[np.ndarray]:
    """``batches`` batches of a suite data module's training images (its ``unaugmented_batches``: seeded order, no
    augmentation) at an export's input ``size``, for int8 calibration; the validation images stay unseen, so the
    int8 metric on them is fair."""
    loader = datamodule.unaugmented_batches("train", batches, seed)
    return [batch["image"].numpy() for batch in export_batches(loader, size)]


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable[np.ndarray],
                  per_channel: bool = True) -> Path:
    """onnxruntime's static int8 quantization (QDQ, unsigned activations, signed per-channel weights), its
    activation ranges calibrated on ``calibration`` batches. Convolutions, matrix products and their ReLU6 become
    int8 (the clip then folds into the int8 convolution); the post-processing (softmax, box decoding, NMS) stays
    in float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": np.ascontiguousarray(batch, dtype=np.float32)}

    source, target = Path(source), Path(target)
    prepared = target.with_name(target.stem + ".prepared.onnx")
    partial = target.with_name(target.name + ".partial")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul", "Clip", "Relu"])
        partial.replace(target)
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target
