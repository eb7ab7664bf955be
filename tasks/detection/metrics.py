"""COCO evaluation: pycocotools' COCOeval (bbox) on the dataset's own ground truth, its 12 stats by name."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["STAT_NAMES", "coco_evaluate"]

STAT_NAMES = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)


def coco_evaluate(ground_truth: COCO, detections: Sequence[dict], image_ids: Sequence[int] | None = None
                  ) -> dict[str, float]:
    """The 12 COCOeval bbox stats of COCO-format ``detections`` (``image_id``, ``category_id``, ``bbox`` xywh,
    ``score``), over ``image_ids`` (default: every ground-truth image). No detections score 0."""
    if not detections:
        return {name: 0.0 for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        results = ground_truth.loadRes(copy.deepcopy(list(detections)))  # loadRes edits what it is given
        evaluator = COCOeval(ground_truth, results, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
