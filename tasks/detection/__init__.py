"""Object detection (the paper's Table 13): SSD300 / SSDLite on MobileNet, COCO data, COCO evaluation."""

from mobilenets.tasks.detection.data import CocoDataModule
from mobilenets.tasks.detection.metrics import coco_evaluate
from mobilenets.tasks.detection.model import ssd_mobilenet, table13
from mobilenets.tasks.detection.synthetic import write_coco
from mobilenets.tasks.detection.task import DetectionTask, DrawDetections

__all__ = ["CocoDataModule", "DetectionTask", "DrawDetections", "coco_evaluate", "ssd_mobilenet", "table13", "write_coco"]
