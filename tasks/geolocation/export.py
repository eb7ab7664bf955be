"""Geolocation's inference graph: hierarchical cell probabilities, the top cells and the best cell's coordinates."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from mobilenets.tasks.export import TaskExport

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
