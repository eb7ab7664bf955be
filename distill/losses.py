"""FitNets' hint loss: the distiller's own criterion on intermediate feature maps. The criteria on the tasks'
outputs belong to the tasks (``mobilenets.tasks.distillation``, chosen by ``BaseTask.distillation_criterion``)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["HintLoss"]


class HintLoss(nn.Module):
    """FitNets' hint: a 1x1 conv adapts the student's intermediate map to the teacher's; mean squared error.

    The student's map is resized (bilinear) to the teacher's spatial size when they differ, e.g. when the
    teacher runs at a higher resolution.
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.adapter = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student_map: Tensor, teacher_map: Tensor) -> Tensor:
        adapted = self.adapter(student_map)
        if adapted.shape[-2:] != teacher_map.shape[-2:]:
            adapted = F.interpolate(adapted, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(adapted, teacher_map)
