"""Face embedding's inference graph: unit-length embeddings, with the verification threshold in the metadata."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mobilenets.tasks.export import TaskExport

__all__ = ["EmbeddingExport"]


class EmbeddingExport(TaskExport):
    """Outputs ``embeddings`` (N, D), unit length."""

    output_names = ("embeddings",)

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.threshold = float(task.verification_threshold)

    def postprocess(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        return (embeddings,)  # the network already ends in L2 normalisation

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "verification_threshold": self.threshold,
                "distance": "squared L2; a pair is the same identity below verification_threshold"}
