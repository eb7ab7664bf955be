"""FaceEmbeddingTask: FaceNet triplet training with online semi-hard mining, LFW-style verification."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from pytorch_metric_learning import distances, losses, miners

from mobilenets.tasks.base import BaseTask
from mobilenets.tasks.face_embedding.metrics import squared_distances, verification_metrics
from mobilenets.tasks.face_embedding.model import EmbeddingNet

__all__ = ["FaceEmbeddingTask", "count_valid_triplets"]


def count_valid_triplets(labels: torch.Tensor) -> int:
    """Anchor-positive-negative triplets a batch holds: sum over anchors of positives x negatives."""
    same = labels[:, None] == labels[None, :]
    positives = same.sum(dim=1) - 1
    negatives = (~same).sum(dim=1)
    return int((positives * negatives).sum())


class FaceEmbeddingTask(BaseTask):
    """Unit-length face embeddings on the MobileNet backbone.

    Args:
        embedding_dim: size of the embedding (FaceNet: 128).
        loss: ``triplet`` (FaceNet: squared L2, margin, online semi-hard negatives) or ``arcface``
            (additive angular margin softmax over training identities, from pytorch-metric-learning).
        margin: the triplet margin on squared distances (FaceNet: 0.2).
        num_identities: training identities, needed by ``arcface`` only.
        val_far, tar_far: the false-accept rates of the VAL and TAR metrics (FaceNet: 1e-3; the paper's
            Table 14: 1e-4).
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/accuracy"
    mode = "max"
    distill_loss = "embedding"

    def __init__(
        self,
        embedding_dim: int = 128,
        loss: Literal["triplet", "arcface"] = "triplet",
        margin: float = 0.2,
        num_identities: int = 0,
        val_far: float = 1e-3,
        tar_far: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        if loss == "arcface" and num_identities < 2:
            raise ValueError("loss 'arcface' classifies training identities: set num_identities")
        super().__init__(**kwargs)
        # FaceNet's loss: squared L2 distances, margin 0.2 (pytorch-metric-learning's default margin is 0.05).
        squared_l2 = distances.LpDistance(p=2, power=2, normalize_embeddings=True)
        self.miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=squared_l2)
        if loss == "triplet":
            self.loss_fn = losses.TripletMarginLoss(margin=margin, distance=squared_l2)
        else:
            self.loss_fn = losses.ArcFaceLoss(num_identities, embedding_dim)
        self.threshold = 1.0  # the verification threshold of the last evaluation, kept in checkpoints
        self._embeddings: dict[int, torch.Tensor] = {}

    def configure_models(self) -> None:
        self.model = EmbeddingNet(self.build_backbone(), self.hparams.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def supervised_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Triplet (or ArcFace) loss of a P x K batch; logs the share of valid triplets the miner kept."""
        embeddings, labels = self.model(batch["image"]), batch["label"]
        if self.hparams.loss != "triplet":
            return self.loss_fn(embeddings, labels), embeddings
        triplets = self.miner(embeddings, labels)
        valid = count_valid_triplets(labels)
        self.log("train/active_triplets", len(triplets[0]) / max(valid, 1), batch_size=len(labels))
        return self.loss_fn(embeddings, labels, triplets), embeddings

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.supervised_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _collect(self, batch: dict) -> None:
        embeddings = self.model(batch["image"])
        for index, embedding in zip(batch["label"].tolist(), embeddings.detach().float().cpu()):
            self._embeddings[index] = embedding

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def _gathered_embeddings(self) -> dict[int, np.ndarray]:
        """Every rank's embeddings, each image once (ranks may hold different numbers of images)."""
        embeddings = {index: vector.numpy() for index, vector in self._embeddings.items()}
        if self.trainer.world_size > 1:
            gathered: list[Any] = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, embeddings)
            embeddings = {index: vector for part in gathered for index, vector in part.items()}
        return embeddings

    def _evaluate(self, stage: str) -> None:
        embeddings = self._gathered_embeddings()
        self._embeddings = {}
        datamodule = self.trainer.datamodule
        if not embeddings or datamodule is None:
            return
        usable = [(pair, a, b) for pair, (a, b) in zip(datamodule.pairs, datamodule.pair_indices)
                  if a in embeddings and b in embeddings]
        if not usable:  # e.g. Lightning's sanity check saw too few images to complete a pair
            return
        first = np.stack([embeddings[a] for _, a, _ in usable])
        second = np.stack([embeddings[b] for _, _, b in usable])
        results = verification_metrics(
            squared_distances(first, second),
            np.array([pair.same for pair, _, _ in usable]),
            np.array([pair.fold for pair, _, _ in usable]),
            val_far=self.hparams.val_far,
            tar_far=self.hparams.tar_far,
        )
        self.threshold = results["threshold"]
        for name in ("accuracy", "accuracy_std", "threshold", "val", "far", "auc", "pairs", "smallest_far"):
            self.log(f"{stage}/{name}", float(results[name]), prog_bar=name == "accuracy")
        if results["tar_at_far"] is not None:  # only where the pair set can resolve tar_far
            self.log(f"{stage}/tar_at_far", results["tar_at_far"])

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        """Per image: the file and its embedding, one column per dimension."""
        embeddings = self.model(batch["image"]).tolist()
        return [{"file": file, **{f"e{i}": round(v, 7) for i, v in enumerate(vector)}}
                for file, vector in zip(batch["file"], embeddings)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["verification_threshold"] = self.threshold

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.threshold = checkpoint.get("verification_threshold", self.threshold)
