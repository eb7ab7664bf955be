"""Geolocation's inference graph: hierarchical cell probabilities, the top cells and the best cell's coordinates."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from mobilenets.tasks.export import Answerer, TaskExport

__all__ = ["GeolocationExport", "hierarchical_scores"]


def hierarchical_scores(logits: Tensor, level_sizes: Sequence[int], parents: Tensor) -> Tensor:
    """log p(finest cell) + the log-probabilities of its enclosing coarser cells (where they exist): ``logits``
    holds every level's cells, coarsest first; ``parents[k]`` maps each finest cell to its cell at level k."""
    starts = [sum(level_sizes[:k]) for k in range(len(level_sizes) + 1)]
    # slices, not split: litert-torch cannot lower a split into one part (a partition of one level)
    levels = [logits[:, start:end] for start, end in zip(starts, starts[1:])]
    scores = levels[-1].log_softmax(dim=1)
    for level, coarse in enumerate(levels[:-1]):
        level_parents = parents[level]
        scores = scores + torch.where(level_parents >= 0, coarse.log_softmax(dim=1)[:, level_parents.clamp(min=0)],
                                      0.0)
    return scores


class GeolocationExport(TaskExport):
    """Outputs ``probabilities`` (N, cells), ``top_probabilities`` / ``top_cells`` (N, k) and ``coordinates``
    (N, 2): latitude and longitude of the most probable cell. The S2 cell ids ride in the metadata."""

    output_names = ("probabilities", "top_probabilities", "top_cells", "coordinates")

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.level_sizes = list(task.level_sizes)
        self.register_buffer("parents", task.parents.detach().clone())
        self.register_buffer("cell_coordinates", torch.stack([task.cell_lat, task.cell_lon], dim=1).float())
        self.cell_ids = [int(i) for i in task.cell_ids.tolist()]
        self.top_k = min(task.hparams.top_k, self.level_sizes[-1])

    def postprocess(self, logits: Tensor) -> tuple[Tensor, ...]:
        probabilities = hierarchical_scores(logits, self.level_sizes, self.parents).softmax(dim=1)
        top_probabilities, top_cells = probabilities.topk(self.top_k, dim=1)
        return probabilities, top_probabilities, top_cells, self.cell_coordinates[top_cells[:, 0]]

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "s2_cell_ids": self.cell_ids,
                "coordinates": "latitude, longitude (degrees) of the most probable cell"}

    @classmethod
    def answerer(cls, metadata: dict[str, Any]) -> Answerer:
        """``{"latitude", "longitude", "top": [{"cell" (S2 token), "score", "latitude", "longitude"}, ...]}``: the
        most probable cell's coordinates, and the top cells' centres."""
        import s2sphere

        cells = metadata["s2_cell_ids"]

        def centre(index: int) -> dict[str, Any]:
            cell = s2sphere.CellId(cells[index])
            point = cell.to_lat_lng()
            return {"cell": cell.to_token(), "latitude": point.lat().degrees, "longitude": point.lng().degrees}

        def answer(outputs: dict[str, np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
            return [{"latitude": float(outputs["coordinates"][i][0]), "longitude": float(outputs["coordinates"][i][1]),
                     "top": [{**centre(int(index)), "score": float(score)}
                             for score, index in zip(outputs["top_probabilities"][i], outputs["top_cells"][i])]}
                    for i in range(len(sizes))]
        return answer
