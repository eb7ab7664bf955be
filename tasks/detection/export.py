"""Detection's inference graph: SSD with box decoding and per-class NMS, NMS inside the ONNX graph.

Outputs ``batch_index`` (K,), ``boxes`` (K, 4) xyxy in input pixels, ``scores`` (K,), ``labels`` (K,) 1..C.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from mobilenets.tasks.export import Answerer, TaskExport

__all__ = ["DetectionExport"]


class DetectionExport(TaskExport):
    """SSD with box decoding and per-class NMS inside the graph; boxes in the pixels of the (S x S) input.

    The traced part ends in per-anchor ``boxes`` and per-class ``class_scores``; ``export_onnx`` appends ONNX's
    own ``NonMaxSuppression`` (one node for the whole batch, which a traced per-image loop cannot give).
    ``nms`` is the same selection in PyTorch. Per class, at most ``detections_per_class`` boxes scoring above
    ``score_thresh`` survive an IoU ``nms_thresh`` suppression.
    """

    output_names = ("batch_index", "boxes", "scores", "labels")
    dynamic_size_ok = False  # SSD's anchors are laid out for one input size
    fixed_cost = False  # NMS's time depends on how many boxes score above the threshold

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        ssd, size = task.model, self.resolution
        features = list(ssd.backbone(torch.zeros(1, 3, size, size)).values())
        anchors = ssd.anchor_generator(ImageList(torch.zeros(1, 3, size, size), [(size, size)]), features)[0]
        self.register_buffer("anchors", anchors.detach().clone())
        self.box_coder = BoxCoder(ssd.box_coder.weights, ssd.box_coder.bbox_xform_clip)
        self.score_thresh, self.nms_thresh = float(ssd.score_thresh), float(ssd.nms_thresh)
        self.detections_per_class = int(ssd.topk_candidates)
        self.category_ids, self.class_names = list(task.category_ids), list(task.class_names)

    @property
    def graph_outputs(self) -> tuple[str, ...]:
        return ("anchor_boxes", "class_scores")

    def postprocess(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        regression, logits = outputs["bbox_regression"], outputs["cls_logits"]
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

    def complete(self, graph_outputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """The four final outputs from the traced graph's boxes and class scores (``nms``)."""
        return self.nms(*graph_outputs)

    def finish_onnx(self, model: Any) -> None:
        _append_nms(model, self)

    def compare(self, reference: tuple[np.ndarray, ...], exported: tuple[np.ndarray, ...],
                min_score: float = 0.05) -> dict[str, float]:
        """Detections matched by IoU (near-equal scores may swap order, so rows are not compared in place)."""
        return _match_detections(reference, exported, min_score)

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """``{"detections": [{"label", "category_id", "score", "box"}, ...]}``, the box xyxy in the pixels of the
        image as sent (the model saw it resized to its input size)."""
        names, ids, size = metadata["class_names"], metadata["category_ids"], metadata["resolution"]

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            answers = []
            for i, (width, height) in enumerate(sizes):
                rows = outputs["batch_index"] == i
                scale = np.array([width / size, height / size, width / size, height / size])
                answers.append({"detections": [
                    {"label": names[int(label) - 1], "category_id": ids[int(label) - 1], "score": float(score),
                     "box": [round(float(value), 1) for value in box * scale]}
                    for box, score, label in zip(outputs["boxes"][rows], outputs["scores"][rows],
                                                 outputs["labels"][rows])]})
            return answers
        return answer

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "category_ids": self.category_ids, "class_names": self.class_names,
                "labels": "1..C index category_ids and class_names (1-based)",
                "score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh,
                "detections_per_class": self.detections_per_class}


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


def _match_detections(reference: tuple[np.ndarray, ...], exported: tuple[np.ndarray, ...],
                      min_score: float) -> dict[str, float]:
    """Each reference detection scoring at least ``min_score`` matched to the exported detection of the same
    image and class with the highest IoU; near-equal scores may swap order, so rows are not compared in place."""
    matched, total, box_diff, score_diff = 0, 0, 0.0, 0.0
    ref = [torch.from_numpy(np.asarray(a)) for a in reference]
    out = [torch.from_numpy(np.asarray(a)) for a in exported]
    for image in torch.unique(ref[0]).tolist():
        for label in torch.unique(ref[3][ref[0] == image]).tolist():
            mine = (ref[0] == image) & (ref[3] == label) & (ref[2] >= min_score)
            theirs = (out[0] == image) & (out[3] == label)
            total += int(mine.sum())
            if not mine.any() or not theirs.any():
                continue
            iou, best = box_iou(ref[1][mine], out[1][theirs]).max(dim=1)
            good = iou > 0.99
            matched += int(good.sum())
            if good.any():
                box_diff = max(box_diff, float((ref[1][mine][good] - out[1][theirs][best[good]]).abs().max()))
                score_diff = max(score_diff, float((ref[2][mine][good] - out[2][theirs][best[good]]).abs().max()))
    return {"detections_compared": total, "matched": matched / total if total else 1.0,
            "max_box_diff": box_diff, "max_score_diff": score_diff}
