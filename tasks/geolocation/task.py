"""GeolocationTask: PlaNet's softmax over S2 cells, evaluated by great-circle distance at five scales."""

from __future__ import annotations

from typing import Any, Literal

import s2sphere
import torch
from torch.nn import functional as F

from mobilenets.tasks.base import BaseTask
from mobilenets.tasks.geolocation.metrics import GeolocationAccuracy
from mobilenets.tasks.geolocation.model import MobileNetClassifier

__all__ = ["GeolocationTask"]


class GeolocationTask(BaseTask):
    """Where was this photo taken: classification over the cells of an adaptive S2 partition.

    Args:
        num_cells: cells in the partition; checked against the data module's.
        location: the predicted coordinate of a cell: the ``mean`` of its training photos (PlaNet) or its ``centre``.
        top_k: cells listed per image by ``predict``.
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/acc_2500km"
    mode = "max"

    def __init__(self, num_cells: int = 1000, location: Literal["mean", "centre"] = "mean", top_k: int = 5,
                 **kwargs: Any) -> None:
        if num_cells < 2:
            raise ValueError(f"num_cells must be >= 2, got {num_cells}")
        super().__init__(**kwargs)
        # The partition travels in checkpoints: each cell's S2 id and its predicted coordinate.
        self.register_buffer("cell_ids", torch.zeros(num_cells, dtype=torch.int64))
        self.register_buffer("cell_lat", torch.zeros(num_cells, dtype=torch.float64))
        self.register_buffer("cell_lon", torch.zeros(num_cells, dtype=torch.float64))
        self.val_metrics, self.test_metrics = GeolocationAccuracy(), GeolocationAccuracy()

    def configure_models(self) -> None:
        self.model = MobileNetClassifier(self.build_backbone(), self.hparams.num_cells)

    def setup(self, stage: str) -> None:
        """Take the partition from the data (cell ids and coordinates); refuse another number of cells."""
        datamodule = getattr(self.trainer, "datamodule", None)
        partition = getattr(datamodule, "partition", None)
        if partition is None:
            return
        if len(partition) != self.hparams.num_cells:
            raise ValueError(f"the partition has {len(partition)} cells but the model was built for num_cells="
                             f"{self.hparams.num_cells}; set model.init_args.num_cells: {len(partition)}")
        lat, lon = (partition.lat_mean, partition.lon_mean) if self.hparams.location == "mean" else partition.centres()
        self.cell_ids.copy_(torch.as_tensor(partition.cells.view("int64")))
        self.cell_lat.copy_(torch.as_tensor(lat))
        self.cell_lon.copy_(torch.as_tensor(lon))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.model(batch["image"]), batch["label"][:, 0].long())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _evaluate(self, batch: dict, stage: str, metric: GeolocationAccuracy) -> None:
        logits = self.model(batch["image"])
        cells, lat, lon = batch["label"][:, 0].long(), batch["label"][:, 1], batch["label"][:, 2]
        if (cells >= 0).any():  # photos outside every cell still count in the distance metrics
            self.log(f"{stage}/loss", F.cross_entropy(logits, cells, ignore_index=-1), batch_size=len(cells))
        predicted = logits.argmax(dim=1)
        metric.update(self.cell_lat[predicted], self.cell_lon[predicted], lat, lon)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _log_metric(self, stage: str, metric: GeolocationAccuracy) -> None:
        for name, value in metric.compute().items():
            self.log(f"{stage}/{name}", value.float(), prog_bar=name == "acc_2500km")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test", self.test_metrics)

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        """Per image: the predicted coordinate and the top-k cells (S2 tokens) with probabilities."""
        probabilities = self.model(batch["image"]).softmax(dim=1)
        top_probs, top_cells = probabilities.topk(min(self.hparams.top_k, self.hparams.num_cells), dim=1)
        rows = []
        for file, probs, cells in zip(batch["file"], top_probs.tolist(), top_cells.tolist()):
            row: dict[str, Any] = {"file": file, "lat": round(float(self.cell_lat[cells[0]]), 6),
                                   "lon": round(float(self.cell_lon[cells[0]]), 6)}
            for rank, (prob, cell) in enumerate(zip(probs, cells), start=1):
                token = s2sphere.CellId(int(self.cell_ids[cell]) % (1 << 64)).to_token()
                row[f"cell_{rank}"], row[f"prob_{rank}"] = token, round(prob, 6)
            rows.append(row)
        return rows
