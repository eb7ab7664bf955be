"""The inference graph every task exports: images in [0, 1] -> the task's final, post-processed outputs.

Each task builds its own subclass in ``export_module()`` (its package's ``export.py``); ``mobilenets.deploy``
traces it to ONNX, runs it and scores it without knowing which task it holds.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilenets.backbone import fold_batchnorm

__all__ = ["Answerer", "TaskExport", "export_batches", "score_outputs"]


#: one batch's outputs by name, and each image's (width, height) -> one JSON-ready answer per image
Answerer = Callable[[dict[str, np.ndarray], Sequence[tuple[int, int]]], list[dict[str, Any]]]


class TaskExport(nn.Module):
    """A task's network as a deployable graph: normalisation, the network with batch norm folded, and the task's
    post-processing. Subclasses set ``output_names`` and ``postprocess``; ``metadata`` says what outputs mean.

    Attributes:
        output_names: the final outputs, in order.
        graph_outputs: what the traced graph returns (``output_names`` unless ``finish_onnx`` appends more graph).
        dynamic_size_ok: whether any input height and width are valid (not for SSD, whose anchors fix the size).
        fixed_cost: whether the run time is independent of the image content (not for NMS), so latency is timed.
    """

    output_names: tuple[str, ...] = ()
    dynamic_size_ok: bool = True
    fixed_cost: bool = True

    def __init__(self, task: Any) -> None:
        super().__init__()
        backbone = task.backbone
        self.register_buffer("mean", backbone.input_mean.detach().clone().float())
        self.register_buffer("std", backbone.input_std.detach().clone().float())
        self.network = fold_batchnorm(task.inference_network()).float()
        self.resolution = int(task.hparams.resolution)
        self.task_class = task.lightning_class_path  # the class its checkpoints and configs name

    @property
    def graph_outputs(self) -> tuple[str, ...]:
        return self.output_names

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return self.postprocess(self.network((images - self.mean) / self.std))

    def postprocess(self, outputs: Any) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def complete(self, graph_outputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """The final outputs (``output_names``) from the traced graph's (``graph_outputs``): what ``finish_onnx``
        appends to the ONNX graph, in PyTorch, for runtimes whose files end where the trace does."""
        return graph_outputs

    def run(self, images: Tensor) -> tuple[Tensor, ...]:
        """The final outputs (``output_names``) in PyTorch: what the exported file computes."""
        return self.complete(self(images))

    def finish_onnx(self, model: Any) -> None:
        """Complete the traced ONNX graph in place (e.g. append ONNX operators the trace cannot give)."""

    def compare(self, reference: tuple[np.ndarray, ...], exported: tuple[np.ndarray, ...]) -> dict[str, float]:
        """How far an exported runtime's outputs are from PyTorch's: the largest absolute difference of each float
        output, the share of equal values of each index output."""
        report = {}
        for name, ours, theirs in zip(self.output_names, reference, exported):
            if ours.shape != theirs.shape:
                raise ValueError(f"{name}: PyTorch gives shape {ours.shape}, the export {theirs.shape}")
            if np.issubdtype(ours.dtype, np.floating):
                report[f"{name}_max_abs_diff"] = float(np.abs(ours - theirs).max())
            else:
                report[f"{name}_agreement"] = float((ours == theirs).mean())
        return report

    def metadata(self) -> dict[str, Any]:
        """What a consumer of the exported file needs to read its outputs (``export``: this class, whose
        ``answerer`` reads them for a server)."""
        return {"task": self.task_class, "resolution": self.resolution, "outputs": list(self.output_names),
                "input": "images: float32 RGB in [0, 1], NCHW",
                "export": f"{type(self).__module__}.{type(self).__qualname__}"}

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """How ``mobilenets serve`` reads the outputs: a function from one batch's outputs (by output name) and
        each image's (width, height) to one JSON-ready answer per image. Keyword arguments a subclass takes are
        its serving options (a face gallery)."""
        raise NotImplementedError(f"{cls.__name__} defines no answerer, so its task cannot be served")



def score_outputs(metric: Any, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], output: int = 0,
                  prefix: str = "val/") -> dict[str, float]:
    """A fresh copy of a task's torchmetrics ``metric`` (a ``Metric`` or ``MetricCollection``) over an export's
    ``outputs[output]`` against each batch's ``label``: probabilities rank as the logits do, so top-k and average
    precision are the task's own."""
    metric = metric.clone()
    metric.reset()
    for batch, arrays in outputs:
        metric.update(torch.from_numpy(arrays[output]), batch["label"].long())
    values = metric.compute()
    if not isinstance(values, dict):
        return {"value": float(values)}
    return {name.removeprefix(prefix): float(value) for name, value in values.items()}


def export_batches(loader: Iterable[dict], size: int) -> Iterator[dict[str, Any]]:
    """A task loader's batches with images made the export's (N, 3, size, size) input.

    Detection data keeps images at their own size (SSD resizes them); here they are resized the way SSD's
    transform does (bilinear, to size x size) and ``scale`` records how to map boxes back to the image's pixels.
    Other batches of another size (a distiller's data, at the teacher's size) are resized as the distiller does.
    """
    for batch in loader:
        images = batch["image"]
        if isinstance(images, (list, tuple)):
            batch["scale"] = [(image.shape[-1] / size, image.shape[-2] / size) for image in images]
            images = torch.cat([F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)
                                for image in images])
        elif images.shape[-2:] != (size, size):  # a distiller's data is at the teacher's size: the student's view
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        batch["image"] = images.contiguous()
        yield batch
