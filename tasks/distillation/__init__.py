"""The teacher side of distillation, shared by its two users (``mobilenets.distill.DistillationTask`` and a taught
``MultiTask`` head): the frozen ``Teacher`` from any source (a suite checkpoint, timm, torchvision, any importable
model) with its own input preparation, the criteria each task picks for its outputs, the hard/soft mix, and the
data with images that have no labels (``SemiSupervisedDataModule``)."""

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
from mobilenets.tasks.distillation.semi_supervised import SemiSupervisedDataModule, batch_parts
from mobilenets.tasks.distillation.teachers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Teacher,
    TeacherConfig,
    TeacherSpec,
    load_teacher,
    teacher_config,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DetectionTargets",
    "EmbeddingDistillation",
    "MultilabelTargets",
    "SemiSupervisedDataModule",
    "SoftTargets",
    "Teacher",
    "TeacherConfig",
    "TeacherSpec",
    "batch_parts",
    "check_same_shape",
    "detection_distillation",
    "hard_soft_mix",
    "load_teacher",
    "multilabel_distillation",
    "soft_target_distillation",
    "teacher_config",
]
