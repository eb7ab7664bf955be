"""Inference graphs of the five tasks, and their export to ONNX.

Every exported model takes float32 RGB images in [0, 1], NCHW, and does the normalisation, the network (batch
norm folded into the convolutions) and the task's post-processing itself, so a deployment needs nothing from
this package. What a consumer needs besides (class names, attribute names, S2 cells, category ids, the input
size) travels in the ONNX file's metadata under ``mobilenets``.

| task | outputs |
|---|---|
| classification | ``probabilities`` (N, C), ``top_probabilities`` / ``top_classes`` (N, k) |
| face attributes | ``probabilities`` (N, A), per attribute |
| face embedding | ``embeddings`` (N, D), unit length |
| geolocation | ``probabilities`` (N, cells), ``top_probabilities`` / ``top_cells`` (N, k), ``coordinates`` (N, 2) |
| detection | ``batch_index`` (K,), ``boxes`` (K, 4) xyxy in input pixels, ``scores`` (K,), ``labels`` (K,) 1..C |
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, clip_boxes_to_image

from mobilenets.backbone import fold_batchnorm
from mobilenets.tasks.base import BaseTask, replacing

__all__ = ["DetectionExport", "TaskExport", "export_onnx", "inference_model", "read_metadata", "save_onnx",
           "trace_to_onnx"]

OPSET = 18


class TaskExport(nn.Module):
    """A task's network as a deployable graph: images in [0, 1] -> the task's final outputs (named).

    Subclasses set ``output_names`` and ``postprocess``; ``metadata`` says what the outputs mean.
    """

    output_names: tuple[str, ...] = ()

    def __init__(self, task: BaseTask) -> None:
        super().__init__()
        backbone = task.backbone
        self.register_buffer("mean", backbone.input_mean.detach().clone().float())
        self.register_buffer("std", backbone.input_std.detach().clone().float())
        self.network = fold_batchnorm(self.network_of(task)).float()
        self.resolution = int(task.hparams.resolution)
        self.task_class = f"{type(task).__module__}.{type(task).__qualname__}"

    def network_of(self, task: BaseTask) -> nn.Module:
        """The image-in module to fold and export (the task's ``model`` unless it says otherwise)."""
        return task.model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return self.postprocess(self.network((images - self.mean) / self.std))

    def postprocess(self, outputs: Any) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """What a consumer of the exported file needs to read its outputs."""
        return {"task": self.task_class, "resolution": self.resolution, "outputs": list(self.output_names),
                "input": "images: float32 RGB in [0, 1], NCHW"}


class ClassifierExport(TaskExport):
    output_names = ("probabilities", "top_probabilities", "top_classes")

    def __init__(self, task: BaseTask) -> None:
        super().__init__(task)
        self.class_names = list(task.class_names)
        self.top_k = min(task.hparams.top_k, len(self.class_names))

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        probabilities = logits.softmax(dim=1)
        return (probabilities, *probabilities.topk(self.top_k, dim=1))

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "class_names": self.class_names}


class AttributesExport(TaskExport):
    output_names = ("probabilities",)

    def __init__(self, task: BaseTask) -> None:
        super().__init__(task)
        self.attribute_names = list(task.attribute_names)

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        return (logits.sigmoid(),)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "attribute_names": self.attribute_names}


class EmbeddingExport(TaskExport):
    output_names = ("embeddings",)

    def __init__(self, task: BaseTask) -> None:
        super().__init__(task)
        self.threshold = float(task.threshold)

    def postprocess(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        return (embeddings,)  # the network already ends in L2 normalisation

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "verification_threshold": self.threshold,
                "distance": "squared L2; a pair is the same identity below verification_threshold"}


class GeolocationExport(TaskExport):
    output_names = ("probabilities", "top_probabilities", "top_cells", "coordinates")

    def __init__(self, task: BaseTask) -> None:
        super().__init__(task)
        self.level_sizes = list(task.level_sizes)
        self.register_buffer("parents", task.parents.detach().clone())
        self.register_buffer("cell_coordinates", torch.stack([task.cell_lat, task.cell_lon], dim=1).float())
        self.cell_ids = [int(i) for i in task.cell_ids.tolist()]
        self.top_k = min(task.hparams.top_k, self.level_sizes[-1])

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        # The task's finest_scores, restated over this module's buffers so that the export holds no task.
        levels = logits.split(self.level_sizes, dim=1)
        scores = levels[-1].log_softmax(dim=1)
        for level, coarse in enumerate(levels[:-1]):
            parents = self.parents[level]
            scores = scores + torch.where(parents >= 0, coarse.log_softmax(dim=1)[:, parents.clamp(min=0)], 0.0)
        probabilities = scores.softmax(dim=1)
        top_probabilities, top_cells = probabilities.topk(self.top_k, dim=1)
        return probabilities, top_probabilities, top_cells, self.cell_coordinates[top_cells[:, 0]]

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "s2_cell_ids": self.cell_ids,
                "coordinates": "latitude, longitude (degrees) of the most probable cell"}


class _SSDNetwork(nn.Module):
    """SSD features and head, tensor in, per-anchor outputs out (what gets folded and exported)."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        head = self.head(list(self.backbone(images).values()))
        return head["bbox_regression"], head["cls_logits"]


class DetectionExport(TaskExport):
    """SSD with box decoding and per-class NMS inside the graph; boxes in the pixels of the (S x S) input.

    The traced part ends in per-anchor ``boxes`` and per-class ``class_scores``; ``export_onnx`` appends ONNX's
    own ``NonMaxSuppression`` (one node for the whole batch, which a traced per-image loop cannot give).
    ``nms`` is the same selection in PyTorch. Per class, at most ``detections_per_class`` boxes scoring above
    ``score_thresh`` survive an IoU ``nms_thresh`` suppression.
    """

    output_names = ("batch_index", "boxes", "scores", "labels")
    graph_outputs = ("anchor_boxes", "class_scores")

    def __init__(self, task: BaseTask) -> None:
        super().__init__(task)
        ssd, size = task.model, self.resolution
        features = list(ssd.backbone(torch.zeros(1, 3, size, size)).values())
        anchors = ssd.anchor_generator(ImageList(torch.zeros(1, 3, size, size), [(size, size)]), features)[0]
        self.register_buffer("anchors", anchors.detach().clone())
        self.box_coder = BoxCoder(ssd.box_coder.weights, ssd.box_coder.bbox_xform_clip)
        self.score_thresh, self.nms_thresh = float(ssd.score_thresh), float(ssd.nms_thresh)
        self.detections_per_class = int(ssd.topk_candidates)
        self.category_ids, self.class_names = list(task.category_ids), list(task.class_names)

    def network_of(self, task: BaseTask) -> nn.Module:
        return _SSDNetwork(task.model)

    def postprocess(self, outputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        regression, logits = outputs
        batch, num_anchors = regression.shape[:2]
        boxes = self.box_coder.decode_single(regression.reshape(-1, 4), self.anchors.repeat(batch, 1))
        boxes = clip_boxes_to_image(boxes.reshape(batch, num_anchors, 4), (self.resolution, self.resolution))
        class_scores = logits.softmax(dim=-1)[..., 1:].transpose(1, 2)  # (N, classes, anchors), no background
        return boxes, class_scores

    def nms(self, boxes: Tensor, class_scores: Tensor) -> tuple[Tensor, ...]:
        """ONNX ``NonMaxSuppression``'s selection, in PyTorch: the four final outputs from the graph's two."""
        found: list[list[Tensor]] = [[], [], [], []]
        for image, (image_boxes, scores) in enumerate(zip(boxes, class_scores)):
            classes, anchors = torch.nonzero(scores > self.score_thresh, as_tuple=True)
            candidate_scores = scores[classes, anchors]
            keep = batched_nms(image_boxes[anchors], candidate_scores, classes, self.nms_thresh)  # by score
            keep = keep[torch.argsort(classes[keep], stable=True)]  # by class, by score within a class
            kept_classes = classes[keep]
            rank_in_class = torch.arange(len(keep)) - torch.searchsorted(kept_classes, kept_classes)
            keep = keep[rank_in_class < self.detections_per_class]
            found[0].append(torch.full((len(keep),), image, dtype=torch.int64))
            found[1].append(image_boxes[anchors[keep]])
            found[2].append(candidate_scores[keep])
            found[3].append(classes[keep] + 1)
        return tuple(torch.cat(parts) for parts in found)

    def detect(self, images: Tensor) -> tuple[Tensor, ...]:
        """The exported model's four outputs, computed in PyTorch."""
        return self.nms(*self(images))

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "category_ids": self.category_ids, "class_names": self.class_names,
                "labels": "1..C index category_ids and class_names (1-based)",
                "score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh,
                "detections_per_class": self.detections_per_class}


def _export_class(task: BaseTask) -> type[TaskExport]:
    from mobilenets.tasks.classification import ClassificationTask
    from mobilenets.tasks.detection import DetectionTask
    from mobilenets.tasks.face_attributes import FaceAttributesTask
    from mobilenets.tasks.face_embedding import FaceEmbeddingTask
    from mobilenets.tasks.geolocation import GeolocationTask

    for task_class, export_class in ((ClassificationTask, ClassifierExport), (FaceAttributesTask, AttributesExport),
                                     (FaceEmbeddingTask, EmbeddingExport), (GeolocationTask, GeolocationExport),
                                     (DetectionTask, DetectionExport)):
        if isinstance(task, task_class):
            return export_class
    raise TypeError(f"no export for {type(task).__name__}: export one of the five tasks (of a distiller, its "
                    f"student)")


def inference_model(task: BaseTask) -> TaskExport:
    """The deployable inference graph of a task (eval mode, batch norm folded), in PyTorch."""
    return _export_class(task)(task.eval()).eval().requires_grad_(False)


def _append_nms(model: Any, export: DetectionExport) -> None:
    """Add ONNX NonMaxSuppression and the gathers that turn its selected (batch, class, anchor) triples into the
    four final outputs, replacing the graph's per-anchor outputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    boxes_name, scores_name = export.graph_outputs
    constants = {"max_per_class": np.array([export.detections_per_class], np.int64),
                 "iou_threshold": np.array([export.nms_thresh], np.float32),
                 "score_threshold": np.array([export.score_thresh], np.float32),
                 "batch_anchor_columns": np.array([0, 2], np.int64)}
    for name, value in constants.items():
        graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    graph.node.extend([
        helper.make_node("NonMaxSuppression", [boxes_name, scores_name, "max_per_class", "iou_threshold",
                                               "score_threshold"], ["selected"]),
        helper.make_node("Gather", ["selected", "batch_anchor_columns"], ["batch_anchor"], axis=1),
        helper.make_node("GatherND", [boxes_name, "batch_anchor"], ["boxes"]),
        helper.make_node("GatherND", [scores_name, "selected"], ["scores"]),
        helper.make_node("Split", ["selected"], ["batch_column", "class_column", "anchor_column"], axis=1,
                         num_outputs=3),
        helper.make_node("Squeeze", ["batch_column", "squeeze_axis"], ["batch_index"]),
        helper.make_node("Squeeze", ["class_column", "squeeze_axis"], ["class_index"]),
        helper.make_node("Add", ["class_index", "one"], ["labels"]),
    ])
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array([1], np.int64), "squeeze_axis"),
                              onnx.numpy_helper.from_array(np.array(1, np.int64), "one")])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["detections"]),
    ])


def trace_to_onnx(module: nn.Module, size: int, output_names: Sequence[str], dynamic_size: bool = False) -> Any:
    """Any image-in module as an ONNX ``ModelProto`` through torch.export (the dynamo exporter), one input
    ``images`` of (batch, 3, size, size) with a dynamic batch (and, if asked, dynamic height and width)."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic_size:
        dims.update({2: torch.export.Dim("height", min=32, max=4096), 3: torch.export.Dim("width", min=32, max=4096)})
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress lines and deprecation notes
        program = torch.onnx.export(module, (torch.rand(2, 3, size, size),), dynamo=True, opset_version=OPSET,
                                    input_names=["images"], output_names=list(output_names),
                                    dynamic_shapes=(dims,), external_data=False, verbose=False)
    return program.model_proto


def save_onnx(model: Any, path: str | Path) -> Path:
    """Check and write an ONNX model: to a temporary name beside ``path``, then renamed, so a file at ``path``
    is always complete."""
    import onnx

    onnx.checker.check_model(model)
    with replacing(path) as partial:
        onnx.save(model, partial)
    return Path(path)


def export_onnx(task: BaseTask, path: str | Path, dynamic_size: bool = False) -> Path:
    """Write the task's inference graph (``inference_model``) to ONNX, with a dynamic batch dimension and the
    export's ``metadata`` under the ``mobilenets`` key.

    Args:
        task: a trained task (``mobilenets.tasks.base.load_task`` reads one from a checkpoint).
        path: the ``.onnx`` file to write.
        dynamic_size: let height and width vary too (not for detection, whose anchors fix the input size).
    """
    import onnx

    export = inference_model(task)
    detection = isinstance(export, DetectionExport)
    if dynamic_size and detection:
        raise ValueError("detection is exported at its own resolution: SSD's anchors are laid out for that size")
    model = trace_to_onnx(export, export.resolution, export.graph_outputs if detection else export.output_names,
                          dynamic_size)
    if detection:
        _append_nms(model, export)
    onnx.helper.set_model_props(model, {"mobilenets": json.dumps(export.metadata())})
    return save_onnx(model, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``mobilenets`` metadata of an exported file (task, input size, names of what the outputs index)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if "mobilenets" not in props:
        raise ValueError(f"{path}: not exported by mobilenets (no 'mobilenets' metadata)")
    return json.loads(props["mobilenets"])
