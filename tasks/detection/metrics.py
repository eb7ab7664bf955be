"""COCO evaluation: pycocotools' COCOeval (bbox) on the dataset's own ground truth, its 12 stats by name."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert, box_iou

__all__ = ["STAT_NAMES", "coco_evaluate", "coco_results", "per_category_ap", "run_cocoeval", "voc07_map50"]

STAT_NAMES = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)


def coco_results(detections: Sequence[dict], image_ids: Sequence[int], category_ids: Sequence[int]
                 ) -> list[dict[str, Any]]:
    """torchvision detections (boxes xyxy, labels 1..K, scores) of the images ``image_ids`` as COCO results rows:
    xywh boxes, label k as ``category_ids[k - 1]``."""
    results = []
    for image_id, found in zip(image_ids, detections):
        boxes = found["boxes"].tolist()
        for (x0, y0, x1, y1), label, score in zip(boxes, found["labels"].tolist(), found["scores"].tolist()):
            results.append({"image_id": int(image_id), "category_id": category_ids[label - 1],
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": round(score, 5)})
    return results


def run_cocoeval(ground_truth: COCO, detections: Sequence[dict], image_ids: Sequence[int] | None = None
                 ) -> COCOeval | None:
    """pycocotools' COCOeval (bbox) of COCO-format ``detections`` (``image_id``, ``category_id``, ``bbox`` xywh,
    ``score``) over ``image_ids`` (default: every ground-truth image), evaluated, accumulated and summarised;
    None without detections."""
    if not detections:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        results = ground_truth.loadRes(copy.deepcopy(list(detections)))  # loadRes edits what it is given
        evaluator = COCOeval(ground_truth, results, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_evaluate(ground_truth: COCO, detections: Sequence[dict], image_ids: Sequence[int] | None = None
                  ) -> dict[str, float]:
    """The 12 COCOeval bbox stats of ``detections`` (see ``run_cocoeval``); no detections score 0."""
    evaluator = run_cocoeval(ground_truth, detections, image_ids)
    if evaluator is None:
        return {name: 0.0 for name in STAT_NAMES}
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}


def per_category_ap(ground_truth: COCO, evaluator: COCOeval | None) -> list[dict[str, float | int | str]]:
    """AP (IoU 0.5:0.95) and AP50 of every category (all areas, 100 detections), as COCOeval's summary computes
    them over all categories; -1 for a category without ground truth (pycocotools' convention)."""
    rows = []
    for index, category_id in enumerate(sorted(ground_truth.cats)):
        ap = ap50 = 0.0
        if evaluator is not None:
            precision = evaluator.eval["precision"][:, :, index, 0, -1]  # IoU x recall, area "all", maxDets 100
            valid, valid50 = precision[precision > -1], precision[0][precision[0] > -1]
            ap = float(valid.mean()) if valid.size else -1.0
            ap50 = float(valid50.mean()) if valid50.size else -1.0
        rows.append({"category_id": category_id, "name": ground_truth.cats[category_id]["name"], "AP": ap,
                     "AP50": ap50})
    return rows


def voc07_map50(ground_truth: COCO, detections: Sequence[dict]) -> float:
    """Pascal VOC 2007's mAP: per class, 11-point interpolated AP at IoU > 0.5, averaged over the classes with
    objects; crowd (VOC: ``difficult``) objects are neither hits nor misses. Detections in COCO results form.

    Hand-written because pycocotools has no VOC protocol: the devkit's ``VOCevaldet`` matches each detection,
    by score, to the ground-truth box it overlaps most, and counts a second hit on one box as a false positive.
    """
    scores = []
    for category_id in sorted(ground_truth.cats):
        truth: dict[int, list[dict]] = {}
        for annotation in ground_truth.loadAnns(ground_truth.getAnnIds(catIds=[category_id])):
            truth.setdefault(annotation["image_id"], []).append(annotation)
        positives = sum(not a.get("iscrowd", 0) for boxes in truth.values() for a in boxes)
        if not positives:
            continue
        found = sorted((d for d in detections if d["category_id"] == category_id), key=lambda d: -d["score"])
        hit, taken = [], set()
        for detection in found:
            candidates = truth.get(detection["image_id"], [])
            if not candidates:
                hit.append(False)
                continue
            overlaps = box_iou(_xyxy([detection["bbox"]]), _xyxy([a["bbox"] for a in candidates]))[0]
            best = int(overlaps.argmax())
            if overlaps[best] <= 0.5:
                hit.append(False)
            elif not candidates[best].get("iscrowd", 0):  # a hit on a difficult object is ignored
                hit.append(candidates[best]["id"] not in taken)
                taken.add(candidates[best]["id"])
        true_positives = np.cumsum(hit) if hit else np.zeros(0)
        recall = true_positives / positives
        precision = true_positives / np.arange(1, len(hit) + 1)
        scores.append(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                               for t in np.linspace(0, 1, 11)]))
    return float(np.mean(scores)) if scores else 0.0


def _xyxy(boxes: list) -> torch.Tensor:
    return box_convert(torch.tensor(boxes, dtype=torch.float64), "xywh", "xyxy")
