"""What a student is asked to match of its teacher's outputs (paper Sections 4.4 and 4.5), one criterion per kind
of output, and how a labeled batch mixes that with the student's own loss. Each task picks its criterion in
``BaseTask.distillation_criterion``; the distiller and a taught multi-task head only call it.

torch has the pieces (``kl_div``, ``binary_cross_entropy_with_logits``); these fix the recipes: Hinton's
temperature scaling, the paper's multi-label and embedding targets, and SSD's per-anchor targets.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DetectionTargets",
    "EmbeddingDistillation",
    "MultilabelTargets",
    "SoftTargets",
    "check_same_shape",
    "detection_distillation",
    "hard_soft_mix",
    "multilabel_distillation",
    "soft_target_distillation",
]


def check_same_shape(student: Tensor, teacher: Tensor, what: str = "outputs",
                     requirement: str = "they must predict the same labels") -> None:
    """Refuse a teacher whose outputs do not line up with the student's, naming both shapes and what must agree."""
    if student.shape != teacher.shape:
        raise ValueError(f"the teacher gives {what} of shape {tuple(teacher.shape[1:])}, the student "
                         f"{tuple(student.shape[1:])}: {requirement}")


def hard_soft_mix(own: Tensor | None, distill: Tensor, hard_weight: float) -> Tensor:
    """``hard_weight * own + (1 - hard_weight) * distill`` on a batch with labels; the distillation term alone on
    one without (``own`` None)."""
    return distill if own is None else hard_weight * own + (1 - hard_weight) * distill


def soft_target_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0,
                             labels: Tensor | None = None, hard_weight: float = 0.5) -> Tensor:
    """Hinton et al.'s knowledge distillation for single-label classification.

    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over the batch; the ``T^2`` keeps the
    soft term's gradients the same size whatever the temperature. With ``labels`` the loss is
    ``hard_weight * cross_entropy + (1 - hard_weight) * soft``; without, the soft term alone.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_same_shape(student_logits, teacher_logits)
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature,
                    dim=1), reduction="batchmean", log_target=True) * temperature**2
    if labels is None:
        return soft
    return hard_weight * F.cross_entropy(student_logits, labels) + (1 - hard_weight) * soft


def multilabel_distillation(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """The paper's attribute distillation: per-attribute BCE against the teacher's sigmoid probabilities."""
    check_same_shape(student_logits, teacher_logits)
    return F.binary_cross_entropy_with_logits(student_logits, teacher_logits.sigmoid())


def detection_distillation(student: dict[str, Tensor], teacher: dict[str, Tensor], temperature: float = 1.0) -> Tensor:
    """SSD distillation on shared anchors: per-anchor soft targets for the class scores (T²-scaled KL, as
    Hinton's, averaged over anchors) plus smooth-L1 to the teacher's box offsets, weighted by the teacher's
    foreground probability so that background anchors do not pull on the boxes.

    Both dicts hold ``cls_logits`` (N, anchors, classes + 1; class 0 is background) and ``bbox_regression``
    (N, anchors, 4), as torchvision's SSD heads return them.
    """
    check_same_shape(student["cls_logits"], teacher["cls_logits"], "class scores")
    check_same_shape(student["bbox_regression"], teacher["bbox_regression"], "box offsets")
    classes = student["cls_logits"].shape[-1]
    soft = soft_target_distillation(student["cls_logits"].reshape(-1, classes),
                                    teacher["cls_logits"].reshape(-1, classes), temperature)
    foreground = 1 - teacher["cls_logits"].softmax(dim=-1)[..., 0]
    box = F.smooth_l1_loss(student["bbox_regression"], teacher["bbox_regression"], reduction="none").sum(dim=-1)
    return soft + (box * foreground).sum() / foreground.sum().clamp(min=1e-6)


class SoftTargets(nn.Module):
    """``soft_target_distillation`` at a fixed temperature, as a criterion."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return soft_target_distillation(student, teacher, self.temperature)


class MultilabelTargets(nn.Module):
    """``multilabel_distillation`` as a criterion."""

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return multilabel_distillation(student, teacher)


class DetectionTargets(nn.Module):
    """``detection_distillation`` at a fixed temperature, as a criterion."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: dict[str, Tensor], teacher: dict[str, Tensor]) -> Tensor:
        return detection_distillation(student, teacher, self.temperature)


class EmbeddingDistillation(nn.Module):
    """The paper's FaceNet distillation: squared L2 distance between student and teacher embeddings.

    When the dimensions differ (a 512-d teacher, a 128-d student), a learned linear map takes the student's
    embedding into the teacher's space (and is L2-normalised there, as the teacher's embeddings are); the
    student's own embedding is what it keeps after training.
    """

    def __init__(self, student_dim: int, teacher_dim: int, normalize: bool = True) -> None:
        super().__init__()
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim else None
        self.normalize = normalize

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if self.projection is not None:
            student = self.projection(student)
            if self.normalize:
                student = F.normalize(student, dim=1)
        check_same_shape(student, teacher, "embeddings")
        return (student - teacher).pow(2).sum(dim=1).mean()
