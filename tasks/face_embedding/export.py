"""Face embedding's inference graph: unit-length embeddings, with the verification threshold in the metadata."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import Tensor

from mobilenets.tasks.export import Answerer, TaskExport
from mobilenets.tasks.face_embedding.gallery import Gallery

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

    @classmethod
    def answerer(cls, metadata: dict[str, Any], gallery: str | None = None, top_k: int = 5) -> Answerer:
        """``{"embedding": [...], "threshold"}``; with a ``gallery`` (``mobilenets gallery build``) also the
        ``top_k`` nearest identities and the verdict, as ``mobilenets identify`` gives them."""
        threshold = float(metadata["verification_threshold"])
        enrolled = Gallery.load(gallery) if gallery else None

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            embeddings = outputs["embeddings"][: len(sizes)]
            answers = [{"embedding": [float(value) for value in row], "threshold": threshold} for row in embeddings]
            if enrolled is not None:
                for found, matches in zip(answers, enrolled.search(embeddings, top_k)):
                    known = matches[0].distance < enrolled.threshold
                    found.update(identity=matches[0].identity if known else "unknown",
                                 matches=[{"identity": m.identity, "distance": m.distance} for m in matches])
            return answers
        return answer
