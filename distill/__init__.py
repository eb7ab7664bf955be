"""Distillation: small MobileNet students trained from large frozen teachers (the paper's Tables 12 and 14).

The teacher and the criterion on the outputs live below, in ``mobilenets.tasks.distillation`` (a taught multi-task
head uses them too); this package adds the teacher-output cache, FitNets hints and the ``DistillationTask`` that
drives them. Names import on first use (``mobilenets.core.lazy``).
"""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "DistillationTask",
    "HintConfig",
    "HintLoss",
    "TeacherCache",
    "save_student",
    "trained_task",
]
__getattr__ = lazy_exports(__name__, {
    "TeacherCache": "cache", "HintLoss": "losses",
    "DistillationTask": "task", "HintConfig": "task", "save_student": "task", "trained_task": "task",
})
