"""Classification's inference graph: softmax probabilities and the top-k classes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import Tensor

from mobilenets.tasks.export import Answerer, TaskExport

__all__ = ["ClassifierExport"]


class ClassifierExport(TaskExport):
    """Outputs ``probabilities`` (N, C) and ``top_probabilities`` / ``top_classes`` (N, k)."""

    output_names = ("probabilities", "top_probabilities", "top_classes")

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.class_names = list(task.class_names)
        self.top_k = min(task.hparams.top_k, len(self.class_names))

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        probabilities = logits.softmax(dim=1)
        return (probabilities, *probabilities.topk(self.top_k, dim=1))

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "class_names": self.class_names}

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """``{"top": [{"label", "index", "score"}, ...]}``, most probable first."""
        names = metadata["class_names"]

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            return [{"top": [{"label": names[int(index)], "index": int(index), "score": float(score)}
                             for score, index in zip(outputs["top_probabilities"][i], outputs["top_classes"][i])]}
                    for i in range(len(sizes))]
        return answer
