"""GeolocationTask: PlaNet's softmax over S2 cells, evaluated by great-circle distance at five scales."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import pytorch_lightning as pl
import s2sphere
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from torch.nn import functional as F

from mobilenets.core.errors import SettingError
from mobilenets.tasks.base import BaseTask, Logged, RunContext, TaskLoss, TaskParts
from mobilenets.tasks.distillation import SoftTargets, check_same_shape
from mobilenets.tasks.geolocation.export import GeolocationExport, hierarchical_scores
from mobilenets.tasks.geolocation.metrics import GeolocationAccuracy
from mobilenets.tasks.geolocation.model import MobileNetClassifier

__all__ = ["DrawGeoPredictions", "Geolocation", "GeolocationTask"]


class Geolocation(TaskParts):
    """Where was this photo taken: classification over the cells of an adaptive S2 partition.

    With a hierarchical multi-partition there is one softmax per level (one FC, split per level) and the
    loss is their sum; a finest cell's score is its probability times its enclosing coarser cells'
    probabilities, and the best-scoring finest cell is the prediction. Its accuracies are logged as
    ``<stage>/acc_<km>km``; each level's own best cell is scored too, as ``<stage>/level_<k>/acc_<km>km``
    (coarsest first, as GeoEstimation reports every partitioning beside the hierarchy).

    Args:
        num_cells: cells in the finest partition; checked against the data module's. Left out, it and
            ``coarser_cells`` are read from the data module's partitions.
        coarser_cells: cells of each coarser partition, coarsest first (empty: a single level, PlaNet).
        location: the predicted coordinate of a cell: the ``mean`` of its training photos (PlaNet) or its ``centre``.
        top_k: cells listed per image by ``predict``.
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/acc_2500km"
    mode = "max"
    size_arguments = ("num_cells", "coarser_cells")

    def __init__(self, num_cells: int | None = None, coarser_cells: list[int] | None = None,
                 location: Literal["mean", "centre"] = "mean", top_k: int = 5, **kwargs: Any) -> None:
        if (num_cells is not None and num_cells < 2) or any(n < 1 for n in coarser_cells or []):
            raise ValueError(f"num_cells must be >= 2 and coarser_cells >= 1, got {num_cells}, {coarser_cells}")
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        num_cells, coarser_cells = self.hparams.num_cells, list(self.hparams.coarser_cells or [])
        self.level_sizes = [*coarser_cells, num_cells]
        # One FC over all levels' cells, split per level: the same as a head per level, in one matrix product.
        self.model = MobileNetClassifier(self.build_backbone(), sum(self.level_sizes))
        # The partition travels in checkpoints: each finest cell's S2 id, its predicted coordinate, and its
        # enclosing cell at every coarser level.
        self.register_buffer("cell_ids", torch.zeros(num_cells, dtype=torch.int64))
        self.register_buffer("cell_lat", torch.zeros(num_cells, dtype=torch.float64))
        self.register_buffer("cell_lon", torch.zeros(num_cells, dtype=torch.float64))
        self.register_buffer("parents", torch.full((len(self.level_sizes) - 1, num_cells), -1, dtype=torch.int64))
        # every coarser level's cell coordinates, the levels one after another: each level's own prediction
        self.register_buffer("coarse_coordinates", torch.zeros(sum(coarser_cells), 2, dtype=torch.float64))
        self.metrics = nn.ModuleDict()  # per stage prefix: the hierarchical metric, then one per level
        self._build_metrics(["val", "test"])

    def sizes_from(self, datamodule: Any) -> dict[str, Any]:
        return {"num_cells": datamodule.num_cells[-1], "coarser_cells": datamodule.num_cells[:-1]}

    def _build_metrics(self, prefixes: list[str]) -> None:
        per_prefix = 1 + (len(self.level_sizes) if len(self.level_sizes) > 1 else 0)
        for prefix in prefixes:
            if prefix not in self.metrics:
                self.metrics[prefix] = nn.ModuleList(GeolocationAccuracy() for _ in range(per_prefix))

    def setup_data(self, context: RunContext) -> None:
        """Take the partitions from the data (cells, coordinates, parents); refuse other cell counts."""
        self._build_metrics(self.test_prefixes())
        datamodule = context.datamodule
        if not getattr(datamodule, "partitions", None):
            return
        if datamodule.num_cells != self.level_sizes:
            raise SettingError(f"the partitions have {datamodule.num_cells} cells (coarsest first) but the model was "
                             f"built for {self.level_sizes}; set model.init_args.num_cells: {datamodule.num_cells[-1]}"
                             f" and coarser_cells: {datamodule.num_cells[:-1]}")
        partition = datamodule.partition
        lat, lon = self._locations(partition)
        self.cell_ids.copy_(torch.as_tensor(partition.cells.view("int64")))
        self.cell_lat.copy_(torch.as_tensor(lat))
        self.cell_lon.copy_(torch.as_tensor(lon))
        for level, parents in enumerate(datamodule.parent_indices()):
            self.parents[level].copy_(torch.as_tensor(parents))
        coarse = [np.stack(self._locations(p), axis=1) for p in datamodule.partitions[:-1]]
        if coarse:
            self.coarse_coordinates.copy_(torch.as_tensor(np.concatenate(coarse)))

    def _locations(self, partition: Any) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's predicted (lat, lon): its training photos' mean (PlaNet) or its centre (``location``)."""
        return (partition.lat_mean, partition.lon_mean) if self.hparams.location == "mean" else partition.centres()

    def restore_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().restore_from_checkpoint(checkpoint)
        # Older checkpoints, without per-level metrics, lack the coarser cells' coordinates: those metrics are NaN.
        # (A distiller hands its student only the attributes: the state dict is the distiller's.)
        if "state_dict" in checkpoint:
            checkpoint["state_dict"].setdefault("coarse_coordinates",
                                                torch.full_like(self.coarse_coordinates, torch.nan))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Log-scores of the finest cells (hierarchically combined when there are coarser levels)."""
        return self.finest_scores(self.model(images))

    def finest_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """log p(finest cell) + the log-probabilities of its enclosing coarser cells (where they exist)."""
        return hierarchical_scores(logits, self.level_sizes, self.parents)

    def _loss(self, logits: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """The sum over levels of the cross-entropy (photos outside a level's cells are ignored there)."""
        return sum(F.cross_entropy(level, cells[:, k], ignore_index=-1)
                   for k, level in enumerate(logits.split(self.level_sizes, dim=1)))

    def supervised_loss(self, batch: dict) -> TaskLoss:
        logits = self.model(batch["image"])
        return TaskLoss(self._loss(logits, batch["label"][:, 2:].long()), self.finest_scores(logits))

    def _crop_average(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of (N, crops, C, H, W) images: per level, the log of the crops' mean probabilities (whose
        log-softmax is itself, so the loss and the hierarchical scores use them as they use logits)."""
        count = images.shape[1]
        logits = self.model(images.flatten(0, 1)).unflatten(0, (-1, count))
        return torch.cat([level.softmax(dim=-1).mean(dim=1).log() for level in logits.split(self.level_sizes, -1)],
                         dim=-1)

    def level_coordinates(self, logits: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(lat, lon) of each level's own most probable cell, coarsest first (the finest without its parents)."""
        predictions, start = [], 0
        for level in logits.split(self.level_sizes, dim=1)[:-1]:
            coordinates = self.coarse_coordinates[start + level.argmax(dim=1)]
            predictions.append((coordinates[:, 0], coordinates[:, 1]))
            start += level.shape[1]
        finest = logits[:, -self.level_sizes[-1]:].argmax(dim=1)
        return [*predictions, (self.cell_lat[finest], self.cell_lon[finest])]

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """Update the distance metrics of the batch's loader (the test set's, where there are several); the loss
        where any photo lies in a cell (those outside every cell still count in the distance metrics)."""
        prefix = "val" if stage == "val" else self.test_prefixes()[dataloader_idx]
        images = batch["image"]
        logits = self._crop_average(images) if images.ndim == 5 else self.model(images)
        lat, lon, cells = batch["label"][:, 0], batch["label"][:, 1], batch["label"][:, 2:].long()
        predicted = self.finest_scores(logits).argmax(dim=1)
        hierarchical, *levels = self.metrics[prefix]
        hierarchical.update(self.cell_lat[predicted], self.cell_lon[predicted], lat, lon)
        for metric, (level_lat, level_lon) in zip(levels, self.level_coordinates(logits)):
            metric.update(level_lat, level_lon, lat, lon)
        if (cells[:, -1] >= 0).any():
            return {f"{prefix}/loss": Logged(self._loss(logits, cells), batch_size=len(cells))}
        return {}

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """Each loader's distance accuracies (and each level's own, where there are coarser levels)."""
        logged = {}
        for prefix in ["val"] if stage == "val" else self.test_prefixes():
            hierarchical, *levels = self.metrics[prefix]
            named = [(prefix, hierarchical)] + [(f"{prefix}/level_{k}", m) for k, m in enumerate(levels)]
            for name_prefix, metric in named:
                for name, value in metric.compute().items():
                    logged[f"{name_prefix}/{name}"] = Logged(value.float(), prog_bar=name_prefix == prefix
                                                             and name == "acc_2500km")
                metric.reset()
        return logged

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """Per image: the predicted coordinate and the top-k cells (S2 tokens) with probabilities."""
        probabilities = self(batch["image"]).softmax(dim=1)
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


    def distillation_criterion(self, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor,
                               temperature: float) -> SoftTargets:
        """Hinton's soft targets over the finest cells' (hierarchical) scores."""
        check_same_shape(student_outputs, teacher_outputs, "cell scores")
        return SoftTargets(temperature)

    def export_module(self) -> GeolocationExport:
        return GeolocationExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """Great-circle accuracies of the exported coordinates."""
        metric = GeolocationAccuracy()
        for batch, (*_, coordinates) in outputs:
            coordinates = torch.from_numpy(coordinates).double()
            metric.update(coordinates[:, 0], coordinates[:, 1], batch["label"][:, 0], batch["label"][:, 1])
        return {name: float(value) for name, value in metric.compute().items()}

    def draw(self, datamodule: Any, path: Path) -> Path:
        """Predicted (cell centre) against true coordinates of the validation photos, joined by lines."""
        from matplotlib import pyplot as plt

        self.eval()
        true, predicted = [], []
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                cells = self(self.backbone.normalize(batch["image"])).argmax(dim=1)
                predicted += list(zip(self.cell_lon[cells].tolist(), self.cell_lat[cells].tolist()))
                true += list(zip(batch["label"][:, 1].tolist(), batch["label"][:, 0].tolist()))
        figure, axes = plt.subplots(figsize=(9, 4.5))
        axes.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="longitude", ylabel="latitude",
                 title="Geolocation: true photo positions and predicted cell centres")
        axes.grid(True, linewidth=0.3)
        for (x0, y0), (x1, y1) in zip(true, predicted):
            axes.plot([x0, x1], [y0, y1], color="0.7", linewidth=0.4)
        axes.scatter(*zip(*true), s=6, label="true", color="tab:blue")
        axes.scatter(*zip(*predicted), s=14, marker="x", label="predicted", color="tab:red")
        axes.legend(loc="lower left")
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        return path


class DrawGeoPredictions(BasePredictionWriter):
    """Draws, per image, its top cells (S2 cell outlines, shaded by probability) on a plain longitude/latitude
    grid with matplotlib: no map tiles, nothing fetched.

    Add it to the trainer's callbacks: ``--trainer.callbacks+=DrawGeoPredictions --trainer.callbacks.output_dir DIR``.

    Args:
        output_dir: where ``<image name>.png`` maps go.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: list[dict],
                           batch_indices: Any, batch: dict, batch_idx: int, dataloader_idx: int) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            raise RuntimeError("DrawGeoPredictions needs matplotlib: pip install 'mobilenet-suite[plots]'") from None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for row in prediction:
            figure, axes = plt.subplots(figsize=(8, 4))
            axes.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="longitude", ylabel="latitude",
                     title=Path(row["file"]).name)
            axes.grid(True, linewidth=0.3)
            rank = 1
            while f"cell_{rank}" in row:
                cell = s2sphere.Cell(s2sphere.CellId.from_token(row[f"cell_{rank}"]))
                corners = [s2sphere.LatLng.from_point(cell.get_vertex(k)) for k in range(4)]
                axes.fill([c.lng().degrees for c in corners], [c.lat().degrees for c in corners], color="tab:red",
                          alpha=max(0.15, row[f"prob_{rank}"]), label=f"#{rank} p={row[f'prob_{rank}']:.2f}")
                rank += 1
            axes.plot(row["lon"], row["lat"], "k*", markersize=12, label="prediction")
            axes.legend(loc="lower left", fontsize=7)
            figure.savefig(self.output_dir / f"{Path(row['file']).stem}.png", dpi=80)
            plt.close(figure)


class GeolocationTask(Geolocation, BaseTask):
    """Geolocation as a LightningModule: what ``class_path: GeolocationTask`` builds (a distiller's student and a multi-task
    head take ``Geolocation``)."""
