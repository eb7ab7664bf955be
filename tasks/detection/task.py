"""DetectionTask: SSD / SSDLite on MobileNet, trained with torchvision's SSD loss, evaluated with COCOeval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torchvision.ops import box_iou
from torchvision.utils import draw_bounding_boxes

from mobilenets.backbone import MobileNetV1
from mobilenets.tasks.detection.metrics import STAT_NAMES, coco_evaluate
from mobilenets.tasks.detection.model import EXTRA_DEPTHS, ssd_mobilenet
from mobilenets.tasks.base import BaseTask, write_text

__all__ = ["DetectionTask", "DrawDetections"]


class DetectionTask(BaseTask):
    """Object detection with SSD on the MobileNet backbone (``resolution`` is the SSD input size, 300 in the paper).

    Args:
        num_classes: object categories (COCO: 80 used, ids up to 90), without the background.
        lite: SSDLite (depthwise-separable extra layers and heads) instead of SSD.
        extra_depths: depths of the four extra layers (TF SSD-MobileNet: 512, 256, 256, 128).
        score_thresh, nms_thresh, detections_per_img: post-processing.
        resolution: the SSD input size (the paper's 300).
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/mAP"
    mode = "max"
    distill_loss = "detection"
    prediction_format = "json"

    def __init__(self, num_classes: int = 90, lite: bool = False, extra_depths: Sequence[int] = EXTRA_DEPTHS,
                 score_thresh: float = 0.01, nms_thresh: float = 0.6, detections_per_img: int = 100,
                 resolution: int = 300, **kwargs: Any) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        super().__init__(resolution=resolution, **kwargs)
        self.category_ids = list(range(1, num_classes + 1))
        self.class_names = [str(i) for i in self.category_ids]
        self._detections: list[dict[str, Any]] = []
        self._image_ids: list[int] = []

    def configure_models(self) -> None:
        hp = self.hparams
        self.model = ssd_mobilenet(self.build_backbone(), hp.num_classes + 1, size=hp.resolution, lite=hp.lite,
                                   extra_depths=hp.extra_depths, score_thresh=hp.score_thresh,
                                   nms_thresh=hp.nms_thresh, detections_per_img=hp.detections_per_img)

    @property
    def backbone(self) -> MobileNetV1:
        return self.model.backbone.body

    def setup(self, stage: str) -> None:
        """Take category ids and names from the data; refuse a different number of classes."""
        ids = self.names_from_data("category_ids", "num_classes", "categories")
        if ids:
            self.category_ids, self.class_names = ids, list(self.trainer.datamodule.class_names)

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

    def supervised_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """torchvision SSD's training loss (matching, hard negatives), keeping the head outputs for distillation.

        The steps of ``SSD.forward`` in training mode, which returns only the losses."""
        image_list, targets, features, head = self._head(batch["image"], batch["target"])
        anchors = self.model.anchor_generator(image_list, features)
        matched = [
            self.model.proposal_matcher(box_iou(target["boxes"], anchors_per_image)) if target["boxes"].numel()
            else torch.full((len(anchors_per_image),), -1, dtype=torch.int64, device=anchors_per_image.device)
            for anchors_per_image, target in zip(anchors, targets)
        ]
        losses = self.model.compute_loss(targets, head, anchors, matched)
        size = len(batch["image"])
        self.log("train/loss_box", losses["bbox_regression"], batch_size=size)
        self.log("train/loss_cls", losses["classification"], batch_size=size)
        return losses["bbox_regression"] + losses["classification"], head

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.supervised_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _to_coco(self, detections: list[dict], image_ids: list[int]) -> list[dict[str, Any]]:
        results = []
        for image_id, found in zip(image_ids, detections):
            boxes = found["boxes"].tolist()
            for (x0, y0, x1, y1), label, score in zip(boxes, found["labels"].tolist(), found["scores"].tolist()):
                results.append({"image_id": int(image_id), "category_id": self.category_ids[label - 1],
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                "score": round(score, 5)})
        return results

    def _collect(self, batch: dict) -> None:
        self._detections += self._to_coco(self.model(batch["image"]), batch["image_id"])
        self._image_ids += list(batch["image_id"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def _evaluate(self, stage: str) -> None:
        detections, image_ids = self._detections, self._image_ids
        self._detections, self._image_ids = [], []
        if dist.is_available() and dist.is_initialized():  # every rank's detections before evaluating
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (detections, image_ids))
            detections = [d for part, _ in gathered for d in part]
            image_ids = [i for _, part in gathered for i in part]
        datamodule = self.trainer.datamodule
        if not image_ids or datamodule is None:
            return
        stats = coco_evaluate(datamodule.coco_for(stage), detections, image_ids)
        for name in STAT_NAMES:
            self.log(f"{stage}/{name}", stats[name], prog_bar=name in ("mAP", "mAP50"))
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            write_text(Path(log_dir or self.trainer.default_root_dir) / f"detections_{stage}.json",
                       json.dumps(detections))

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        """COCO results rows, with the file name and the category name added."""
        rows = []
        for file, image_id, detections in zip(batch["file"], batch["image_id"], self.model(batch["image"])):
            for row in self._to_coco([detections], [image_id]):
                rows.append({"file_name": Path(file).name, **row,
                             "category": self.class_names[self.category_ids.index(row["category_id"])]})
        return rows

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["category_ids"], checkpoint["class_names"] = self.category_ids, self.class_names

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.category_ids = checkpoint.get("category_ids", self.category_ids)
        self.class_names = checkpoint.get("class_names", self.class_names)


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
            drawn = draw_bounding_boxes((image * 255).to(torch.uint8).cpu(), boxes, labels, colors="red", width=2)
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(self.output_dir / Path(file).name)
