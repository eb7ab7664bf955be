"""Object detection (the paper's Table 13): SSD300 / SSDLite on MobileNet, COCO data, COCO evaluation."""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "CocoDataModule",
    "Detection",
    "DetectionTask",
    "DrawDetections",
    "VOCDataModule",
    "coco_evaluate",
    "ssd_mobilenet",
    "table13",
    "write_coco",
    "write_voc",
]
__getattr__ = lazy_exports(__name__, {
    "CocoDataModule": "data", "VOCDataModule": "data",
    "coco_evaluate": "metrics",
    "ssd_mobilenet": "model", "table13": "model",
    "write_coco": "synthetic", "write_voc": "synthetic",
    "Detection": "task", "DetectionTask": "task", "DrawDetections": "task",
})
