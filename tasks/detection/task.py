"""DetectionTask: SSD / SSDLite on MobileNet, trained with torchvision's SSD loss, evaluated with COCOeval."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torchvision.models.detection.transform import resize_boxes
from torchvision.utils import draw_bounding_boxes

from mobilenets.backbone import MobileNetV1
from mobilenets.core.checkpoint import read_checkpoint
from mobilenets.core.distributed import gather_objects
from mobilenets.core.io import write_csv, write_text
from mobilenets.tasks.base import BaseTask, Logged, RunContext, TaskLoss, TaskParts
from mobilenets.tasks.detection.export import DetectionExport
from mobilenets.tasks.detection.metrics import STAT_NAMES, coco_evaluate, coco_results, per_category_ap, run_cocoeval
from mobilenets.tasks.detection.model import (
    EXTRA_DEPTHS,
    AnchorConfig,
    SSDNetwork,
    match_anchors,
    ssd_loss,
    ssd_mobilenet,
)
from mobilenets.tasks.distillation import DetectionTargets, check_same_shape

__all__ = ["Detection", "DetectionTask", "DrawDetections"]

log = logging.getLogger(__name__)


class Detection(TaskParts):
    """Object detection with SSD on the MobileNet backbone (``resolution`` is the SSD input size, 300 in the paper).

    Args:
        num_classes: object categories (COCO: 80 used, ids up to 90), without the background; checked against
            the data module's, and read from it when left out.
        lite: SSDLite (depthwise-separable extra layers and heads) instead of SSD.
        extra_depths: depths of the four extra layers (TF SSD-MobileNet: 512, 256, 256, 128).
        anchors: the anchor layout (``AnchorConfig``: TF's ``ssd_anchor_generator`` fields and defaults).
        fine_tune_checkpoint: a detection ``.ckpt`` (any classes) to start ``fit`` from, as the TF API's
            ``fine_tune_checkpoint``: backbone, extra layers and box regressor are loaded, the class predictor is
            created anew for this task's classes. Not read when resuming (``--ckpt_path``) or testing.
        score_thresh, nms_thresh, detections_per_img: post-processing.
        resolution: the SSD input size (the paper's 300).
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/mAP"
    mode = "max"
    checkpoint_attributes = ("category_ids", "class_names")
    batched_images = False

    size_arguments = ("num_classes",)

    def __init__(self, num_classes: int | None = None, lite: bool = False, extra_depths: Sequence[int] = EXTRA_DEPTHS,
                 anchors: AnchorConfig = AnchorConfig(), fine_tune_checkpoint: str | None = None,
                 score_thresh: float = 0.01, nms_thresh: float = 0.6, detections_per_img: int = 100,
                 resolution: int = 300, **kwargs: Any) -> None:
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        super().__init__(resolution=resolution, **kwargs)
        self._detections: list[dict[str, Any]] = []
        self._image_ids: list[int] = []

    def configure_models(self) -> None:
        hp = self.hparams
        anchors = hp.anchors if isinstance(hp.anchors, AnchorConfig) else AnchorConfig(**hp.anchors)
        self.model = ssd_mobilenet(self.build_backbone(), hp.num_classes + 1, size=hp.resolution, lite=hp.lite,
                                   extra_depths=hp.extra_depths, anchors=anchors, score_thresh=hp.score_thresh,
                                   nms_thresh=hp.nms_thresh, detections_per_img=hp.detections_per_img)
        self.category_ids = list(range(1, hp.num_classes + 1))
        self.class_names = [str(i) for i in self.category_ids]

    def sizes_from(self, datamodule: Any) -> dict[str, Any]:
        return {"num_classes": len(datamodule.category_ids)}

    @property
    def backbone(self) -> MobileNetV1:
        return self.model.backbone.body

    def replace_backbone(self, body: MobileNetV1) -> None:
        self.model.backbone.body = body

    def setup_data(self, context: RunContext) -> None:
        """Take category ids and names from the data; refuse a different number of classes. Starting ``fit``
        afresh, load ``fine_tune_checkpoint``."""
        ids = self.names_from_data(context.datamodule, "category_ids", "num_classes", "categories")
        if ids:
            self.category_ids, self.class_names = ids, list(context.datamodule.class_names)
        if context.stage == "fit" and self.hparams.fine_tune_checkpoint and not context.resuming:
            self.fine_tune_from(self.hparams.fine_tune_checkpoint)

    def fine_tune_from(self, path: str | Path) -> dict[str, list[str]]:
        """Load every tensor of a detection checkpoint but the class predictor's, which keeps its fresh init.

        Returns the names ``loaded`` and ``reinitialised``; any other tensor that is missing from the checkpoint
        or differs in shape is an error naming it."""
        state = read_checkpoint(path).get("state_dict")
        if state is None:
            raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict); give a DetectionTask .ckpt")
        source = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
        own = self.model.state_dict()
        reinitialised = self.class_predictor_tensors()
        loaded = {}
        for key, value in own.items():
            if key in reinitialised:
                continue
            if key not in source:
                raise ValueError(f"{path}: has no tensor {key}; fine-tuning needs a detector of the same architecture "
                                 f"(lite, extra_depths, anchors per location, backbone alpha)")
            if source[key].shape != value.shape:
                raise ValueError(f"{path}: tensor {key} has shape {tuple(source[key].shape)}, this model's "
                                 f"{tuple(value.shape)}; fine-tuning needs the same architecture except the classes")
            loaded[key] = source[key]
        self.model.load_state_dict(loaded, strict=False)
        log.info("fine_tune_checkpoint %s: loaded %d tensors; re-initialised the %d of the class predictor (%s)",
                 path, len(loaded), len(reinitialised), ", ".join(reinitialised))
        return {"loaded": sorted(loaded), "reinitialised": reinitialised}

    def class_predictor_tensors(self) -> list[str]:
        """State-dict names of the class predictor: the last conv of each map's class-score branch (with SSDLite,
        the depthwise block before it does not depend on the classes and is fine-tuned like the rest)."""
        names = []
        for index, branch in enumerate(self.model.head.classification_head.module_list):
            convs = [name for name, module in branch.named_modules() if isinstance(module, torch.nn.Conv2d)]
            prefix = f"head.classification_head.module_list.{index}" + (f".{convs[-1]}" if convs[-1] else "")
            names += [f"{prefix}.weight", f"{prefix}.bias"]
        return names

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections (boxes xyxy in each image's own pixels, labels 1..K, scores) for images in [0, 1]."""
        return self.model(images)

    def _head(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> tuple:
        ssd = self.model
        image_list, targets = ssd.transform(images, targets)
        features = list(ssd.backbone(image_list.tensors).values())
        return image_list, targets, features, ssd.head(features)

    def distill_outputs(self, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The SSD head's per-anchor outputs: ``cls_logits`` (N, anchors, classes + 1), ``bbox_regression``."""
        return self._head(images)[3]

    def supervised_loss(self, batch: dict) -> TaskLoss:
        """SSD's training loss (matching, hard negatives; crowd regions ignored), keeping the head outputs for
        distillation. The steps of ``SSD.forward`` in training mode, which returns only the losses."""
        images = batch["image"]
        image_list, targets, features, head = self._head(images, batch["target"])
        for image, size, target in zip(images, image_list.image_sizes, targets):  # the transform resized "boxes"
            if target.get("crowd_boxes") is not None:
                target["crowd_boxes"] = resize_boxes(target["crowd_boxes"], image.shape[-2:], size)
        anchors = self.model.anchor_generator(image_list, features)
        losses = ssd_loss(self.model, targets, head, anchors, match_anchors(self.model, targets, anchors))
        size = len(batch["image"])
        return TaskLoss(losses["bbox_regression"] + losses["classification"], head,
                        {"train/loss_box": Logged(losses["bbox_regression"], batch_size=size),
                         "train/loss_cls": Logged(losses["classification"], batch_size=size)})

    def _to_coco(self, detections: list[dict], image_ids: list[int]) -> list[dict[str, Any]]:
        return coco_results(detections, image_ids, self.category_ids)

    def _collect(self, batch: dict) -> None:
        self._detections += self._to_coco(self.model(batch["image"]), batch["image_id"])
        self._image_ids += list(batch["image_id"])

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """Collect the batch's detections (COCOeval runs over all of them at ``evaluation_end``)."""
        self._collect(batch)
        return {}

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """COCOeval of every rank's detections (and the data's own metrics, VOC's AP); the detections and, for
        test, the per-category AP table written to ``context.output_dir``."""
        detections, image_ids = self._detections, self._image_ids
        self._detections, self._image_ids = [], []
        gathered = gather_objects((detections, image_ids))  # every rank's detections before evaluating
        detections = [d for part, _ in gathered for d in part]
        image_ids = [i for _, part in gathered for i in part]
        datamodule = context.datamodule
        if not image_ids or datamodule is None:
            return {}
        ground_truth = datamodule.coco_for(stage)
        evaluator = run_cocoeval(ground_truth, detections, image_ids)
        stats = dict(zip(STAT_NAMES, evaluator.stats)) if evaluator else dict.fromkeys(STAT_NAMES, 0.0)
        logged = {f"{stage}/{name}": Logged(float(stats[name]), prog_bar=name in ("mAP", "mAP50"))
                  for name in STAT_NAMES}
        logged |= {f"{stage}/{name}": Logged(value)
                   for name, value in datamodule.dataset_metrics(stage, detections).items()}
        if context.output_dir is not None:
            write_text(context.output_dir / f"detections_{stage}.json", json.dumps(detections))
            if stage == "test":
                write_csv(context.output_dir / "per_category_ap.csv", per_category_ap(ground_truth, evaluator))
        return logged

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """COCO results rows, with the file name and the category name added."""
        rows = []
        for file, image_id, detections in zip(batch["file"], batch["image_id"], self.model(batch["image"])):
            for row in self._to_coco([detections], [image_id]):
                rows.append({"file_name": Path(file).name, **row,
                             "category": self.class_names[self.category_ids.index(row["category_id"])]})
        return rows

    def distillation_criterion(self, student_outputs: dict[str, torch.Tensor], teacher_outputs: dict[str, torch.Tensor],
                               temperature: float) -> DetectionTargets:
        """Per-anchor soft targets and foreground-weighted boxes: teacher and student must share the input size, the
        anchors and the classes."""
        requirement = "they must share the input size, the anchors and the classes"
        check_same_shape(student_outputs["cls_logits"], teacher_outputs["cls_logits"], "per-anchor class scores",
                         requirement)
        check_same_shape(student_outputs["bbox_regression"], teacher_outputs["bbox_regression"], "box offsets",
                         requirement)
        return DetectionTargets(temperature)

    def inference_network(self) -> SSDNetwork:
        return SSDNetwork(self.model)

    def export_module(self) -> DetectionExport:
        return DetectionExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """COCO mAP of the exported detections, their boxes mapped back to each image's pixels (``scale``)."""
        detections, image_ids = [], []
        for batch, (batch_index, boxes, scores, labels) in outputs:
            ids = [int(i) for i in batch["image_id"]]
            per_image = [{"boxes": torch.from_numpy(boxes[batch_index == image]) * torch.tensor([sx, sy, sx, sy]),
                          "labels": torch.from_numpy(labels[batch_index == image]),
                          "scores": torch.from_numpy(scores[batch_index == image])}
                         for image, (sx, sy) in enumerate(batch["scale"])]
            detections += self._to_coco(per_image, ids)
            image_ids += ids
        stats = coco_evaluate(datamodule.coco_for(stage), detections, image_ids)
        return {"mAP": stats["mAP"], "mAP50": stats["mAP50"]}

    def draw(self, datamodule: Any, path: Path, min_score: float = 0.2, count: int = 4) -> Path:
        """The first ``count`` validation images that hold objects, side by side: their ground truth in green,
        the detections scoring at least ``min_score`` in red with class and score."""
        from torchvision.utils import make_grid

        self.eval()
        samples = []
        for batch in datamodule.val_dataloader():
            samples += [(image, target) for image, target in zip(batch["image"], batch["target"])
                        if len(target["boxes"])]
            if len(samples) >= count:
                break
        images, targets = [image for image, _ in samples[:count]], [target for _, target in samples[:count]]
        with torch.no_grad():
            detections = self(images)
        drawn = []
        for image, target, found in zip(images, targets, detections):
            keep = found["scores"] >= min_score
            names = [f"{self.class_names[label - 1]} {score:.2f}"
                     for label, score in zip(found["labels"][keep].tolist(), found["scores"][keep].tolist())]
            picture = draw_bounding_boxes((image * 255).to(torch.uint8), target["boxes"], colors="lime", width=1)
            if keep.any():  # torchvision warns on an empty box list
                picture = draw_bounding_boxes(picture, found["boxes"][keep], names, colors="red", width=2)
            drawn.append(picture)
        grid = make_grid(drawn, nrow=len(drawn), padding=4)
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
        return path


class DrawDetections(BasePredictionWriter):
    """Draws ``predict``'s boxes onto copies of the images (what people look at first).

    Add it to the trainer's callbacks: ``--trainer.callbacks+=DrawDetections --trainer.callbacks.output_dir DIR``.

    Args:
        output_dir: where the drawn copies go, under the images' own file names.
        min_score: boxes scoring lower are not drawn.
    """

    def __init__(self, output_dir: str, min_score: float = 0.3) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.min_score = Path(output_dir), min_score

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: list[dict],
                           batch_indices: Any, batch: dict, batch_idx: int, dataloader_idx: int) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for image, file in zip(batch["image"], batch["file"]):
            rows = [r for r in prediction if r["file_name"] == Path(file).name and r["score"] >= self.min_score]
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)]).reshape(-1, 4)
            labels = [f"{r['category']} {r['score']:.2f}" for r in rows]
            drawn = (image * 255).to(torch.uint8).cpu()
            if len(boxes):  # torchvision warns on an empty box list
                drawn = draw_bounding_boxes(drawn, boxes, labels, colors="red", width=2)
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(self.output_dir / Path(file).name)


class DetectionTask(Detection, BaseTask):
    """Detection as a LightningModule: what ``class_path: DetectionTask`` builds (a distiller's student and a multi-task
    head take ``Detection``)."""
