"""Each distillation loss equals a hand computation."""

import math

import pytest
import torch

from mobilenets.distill.losses import HintLoss
from mobilenets.tasks.distillation import (
    EmbeddingDistillation,
    detection_distillation,
    multilabel_distillation,
    soft_target_distillation,
)


def test_soft_targets_equal_hintons_formula():
    student, teacher = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.2, 3.0, 1.0]])
    t = 2.0
    p = [math.exp(v / t) for v in teacher[0].tolist()]
    q = [math.exp(v / t) for v in student[0].tolist()]
    p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert soft_target_distillation(student, teacher, temperature=t).item() == pytest.approx(t * t * kl, rel=1e-5)
    ce = -math.log(math.exp(2.0) / sum(math.exp(v) for v in student[0].tolist()))
    mixed = soft_target_distillation(student, teacher, t, labels=torch.tensor([1]), hard_weight=0.3)
    assert mixed.item() == pytest.approx(0.3 * ce + 0.7 * t * t * kl, rel=1e-5)


def test_soft_targets_vanish_when_the_student_matches():
    logits = torch.randn(4, 5)
    assert soft_target_distillation(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_multilabel_is_bce_against_teacher_probabilities():
    student, teacher = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.0]])
    expected = 0.0
    for s, t in zip(student[0].tolist(), teacher[0].tolist()):
        p, q = 1 / (1 + math.exp(-t)), 1 / (1 + math.exp(-s))
        expected += -(p * math.log(q) + (1 - p) * math.log(1 - q)) / 2
    assert multilabel_distillation(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_embedding_loss_is_squared_distance_and_projects_other_dimensions():
    student, teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert EmbeddingDistillation(2, 2)(student, teacher).item() == pytest.approx(1.0)  # (2 + 0) / 2
    projected = EmbeddingDistillation(2, 3)
    assert projected.projection.weight.shape == (3, 2)
    loss = projected(student, torch.nn.functional.normalize(torch.randn(2, 3), dim=1))
    loss.backward()
    assert projected.projection.weight.grad is not None


def test_hint_adapts_channels_and_size():
    hint = HintLoss(4, 6)
    torch.nn.init.zeros_(hint.adapter.weight)
    torch.nn.init.zeros_(hint.adapter.bias)
    teacher = torch.ones(2, 6, 8, 8)
    assert hint(torch.randn(2, 4, 4, 4), teacher).item() == pytest.approx(1.0)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must predict the same labels"):
        soft_target_distillation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        soft_target_distillation(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)


def test_detection_distillation_weights_boxes_by_teacher_foreground():
    # One image, two anchors: the teacher is sure anchor 0 is background and anchor 1 is class 1.
    teacher = {"cls_logits": torch.tensor([[[20.0, 0.0], [0.0, 20.0]]]),
               "bbox_regression": torch.zeros(1, 2, 4)}
    student = {"cls_logits": teacher["cls_logits"].clone(),
               "bbox_regression": torch.tensor([[[5.0, 5.0, 5.0, 5.0], [0.5, 0.0, 0.0, 0.0]]])}
    # Soft term 0 (same logits); box term: anchor 0 has weight ~0, anchor 1 smooth-L1(0.5) = 0.125.
    assert detection_distillation(student, teacher).item() == pytest.approx(0.125, rel=1e-3)
