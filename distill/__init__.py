"""Distillation: small MobileNet students trained from large frozen teachers (the paper's Tables 12 and 14).

The criterion on the outputs is the student task's own (``BaseTask.distillation_criterion``); this package adds the
teachers, their output cache, FitNets hints and the ``DistillationTask`` that drives them.
"""

from mobilenets.distill.cache import TeacherCache
from mobilenets.distill.losses import HintLoss
from mobilenets.distill.task import DistillationTask, HintConfig, save_student, trained_task
from mobilenets.distill.teachers import Teacher, TeacherConfig, load_teacher

__all__ = [
    "DistillationTask",
    "HintConfig",
    "HintLoss",
    "Teacher",
    "TeacherCache",
    "TeacherConfig",
    "load_teacher",
    "save_student",
    "trained_task",
]
