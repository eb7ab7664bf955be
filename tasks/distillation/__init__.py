"""The teacher side of distillation, shared by its two users (``mobilenets.distill.DistillationTask`` and a taught
``MultiTask`` head): the frozen ``Teacher`` from any source (a suite checkpoint, timm, torchvision, any importable
model) with its own input preparation, the criteria each task picks for its outputs, and the hard/soft mix."""

from mobilenets.tasks.distillation.criteria import (
    DetectionTargets,
    EmbeddingDistillation,
    MultilabelTargets,
    SoftTargets,
    check_same_shape,
    detection_distillation,
    hard_soft_mix,
    multilabel_distillation,
    soft_target_distillation,
)
from mobilenets.tasks.distillation.teachers import IMAGENET_MEAN, IMAGENET_STD, Teacher, TeacherConfig, load_teacher

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DetectionTargets",
    "EmbeddingDistillation",
    "MultilabelTargets",
    "SoftTargets",
    "Teacher",
    "TeacherConfig",
    "check_same_shape",
    "detection_distillation",
    "hard_soft_mix",
    "load_teacher",
    "multilabel_distillation",
    "soft_target_distillation",
]
