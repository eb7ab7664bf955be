"""Face attributes' inference graph: one sigmoid probability per attribute."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mobilenets.tasks.export import TaskExport

__all__ = ["AttributesExport"]


class AttributesExport(TaskExport):
    """Outputs ``probabilities`` (N, A), per attribute."""

    output_names = ("probabilities",)

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.attribute_names = list(task.attribute_names)

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        return (logits.sigmoid(),)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "attribute_names": self.attribute_names}
