"""Face attributes' inference graph: one sigmoid probability per attribute."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import Tensor

from mobilenets.tasks.export import Answerer, TaskExport

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

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """``{"attributes": [{"name", "probability"}, ...]}`` in the data's attribute order."""
        names = metadata["attribute_names"]

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            return [{"attributes": [{"name": name, "probability": float(probability)}
                                    for name, probability in zip(names, outputs["probabilities"][i])]}
                    for i in range(len(sizes))]
        return answer
