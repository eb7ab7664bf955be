"""Distillation: small MobileNet students trained from large frozen teachers (the paper's Tables 12 and 14)."""

from mobilenets.distill.cache import TeacherCache
from mobilenets.distill.losses import (
    EmbeddingDistillation,
    HintLoss,
    detection_distillation,
    multilabel_distillation,
    soft_target_distillation,
)
from mobilenets.distill.task import DistillationTask, HintConfig, save_student
from mobilenets.distill.teachers import Teacher, TeacherConfig, load_teacher

__all__ = [
    "DistillationTask",
    "EmbeddingDistillation",
    "HintConfig",
    "HintLoss",
    "Teacher",
    "TeacherCache",
    "TeacherConfig",
    "detection_distillation",
    "load_teacher",
    "multilabel_distillation",
    "save_student",
    "soft_target_distillation",
]
