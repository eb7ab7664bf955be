"""FaceEmbeddingTask: FaceNet triplet training with online semi-hard mining, LFW-style verification."""

from __future__ import annotations

from typing import Any, Iterable, Literal

import numpy as np
import torch
from pytorch_metric_learning import distances, losses, miners

from mobilenets.core.distributed import gather_objects
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.base import BaseTask, Logged, RunContext, TaskLoss, TaskParts
from mobilenets.tasks.distillation import EmbeddingDistillation
from mobilenets.tasks.face_embedding.data import IdentificationSet, PairSet
from mobilenets.tasks.face_embedding.export import EmbeddingExport
from mobilenets.tasks.face_embedding.metrics import (
    ValThresholdRule,
    identification_metrics,
    squared_distances,
    verification_metrics,
)
from mobilenets.tasks.face_embedding.model import EmbeddingNet

__all__ = ["FaceEmbedding", "FaceEmbeddingTask", "count_valid_triplets"]


def count_valid_triplets(labels: torch.Tensor) -> int:
    """Anchor-positive-negative triplets a batch holds: sum over anchors of positives x negatives."""
    same = labels[:, None] == labels[None, :]
    positives = same.sum(dim=1) - 1
    negatives = (~same).sum(dim=1)
    return int((positives * negatives).sum())


class FaceEmbedding(TaskParts):
    """Unit-length face embeddings on the MobileNet backbone.

    Args:
        embedding_dim: size of the embedding (FaceNet: 128).
        loss: ``triplet`` (FaceNet: squared L2, margin, online semi-hard negatives) or ``arcface``
            (additive angular margin softmax over training identities, from pytorch-metric-learning).
        margin: the triplet margin on squared distances (FaceNet: 0.2).
        num_identities: training identities, needed by ``arcface`` only.
        val_far: the false-accept rate of the VAL metric (FaceNet: 1e-3; the paper's Table 14: 1e-4).
        tar_far: the false-accept rate of the TAR metric.
        val_threshold_rule: how VAL's threshold is read off the training folds' FAR curve: ``interpolated``
            (FaceNet's published protocol, the default) or ``grid`` (the largest grid threshold within the target,
            up to one grid step stricter); see ``metrics.far_threshold``.
        identification_fars: the false-accept rates of open-set identification's DIR, where the data module has a
            gallery (``gallery_dir``, ``probe_dir``).
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/accuracy"
    mode = "max"
    checkpoint_attributes = ("verification_threshold",)

    def __init__(
        self,
        embedding_dim: int = 128,
        loss: Literal["triplet", "arcface"] = "triplet",
        margin: float = 0.2,
        num_identities: int = 0,
        val_far: float = 1e-3,
        tar_far: float = 1e-4,
        val_threshold_rule: ValThresholdRule = "interpolated",
        identification_fars: tuple[float, ...] = (0.01, 0.1),
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
        self.verification_threshold = 1.0  # chosen by the last evaluation, kept in checkpoints
        self._embeddings: dict[int, dict[int, torch.Tensor]] = {}  # per loader: image index -> embedding

    def configure_models(self) -> None:
        self.model = EmbeddingNet(self.build_backbone(), self.hparams.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def supervised_loss(self, batch: dict) -> TaskLoss:
        """Triplet (or ArcFace) loss of a P x K batch; with triplets, the share of valid ones the miner kept."""
        embeddings, labels = self.model(batch["image"]), batch["label"]
        if self.hparams.loss != "triplet":
            return TaskLoss(self.loss_fn(embeddings, labels), embeddings)
        triplets = self.miner(embeddings, labels)
        active = len(triplets[0]) / max(count_valid_triplets(labels), 1)
        return TaskLoss(self.loss_fn(embeddings, labels, triplets), embeddings,
                        {"train/active_triplets": Logged(active, batch_size=len(labels))})

    def _collect(self, batch: dict, dataloader_idx: int = 0) -> None:
        embeddings = self.model(batch["image"])
        collected = self._embeddings.setdefault(dataloader_idx, {})
        for index, embedding in zip(batch["label"].tolist(), embeddings.detach().float().cpu()):
            collected[index] = embedding

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """Collect the batch's embeddings (the pairs are scored at ``evaluation_end``)."""
        self._collect(batch, dataloader_idx)
        return {}

    def verification_results(self, embeddings: dict[int, np.ndarray], pair_set: PairSet) -> dict[str, Any] | None:
        """LFW-style verification over a pair set, from each image's embedding (by image index); None when no
        pair has both its images (e.g. Lightning's sanity check saw too few)."""
        usable = [(pair, a, b) for pair, (a, b) in zip(pair_set.pairs, pair_set.indices)
                  if a in embeddings and b in embeddings]
        if not usable:
            return None
        return verification_metrics(
            squared_distances(np.stack([embeddings[a] for _, a, _ in usable]),
                              np.stack([embeddings[b] for _, _, b in usable])),
            np.array([pair.same for pair, _, _ in usable]),
            np.array([pair.fold for pair, _, _ in usable]),
            val_far=self.hparams.val_far,
            tar_far=self.hparams.tar_far,
            val_threshold_rule=self.hparams.val_threshold_rule,
        )

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """Verification over each pair set (and open-set identification where the data has a gallery), from
        every rank's embeddings; validation's threshold is kept for ``verify``."""
        collected, self._embeddings = self._embeddings, {}
        datamodule, logged = context.datamodule, {}
        for loader_index, prefix in enumerate(["val"] if stage == "val" else self.test_prefixes()):
            # every rank's embeddings, each image once (ranks may hold different numbers of images)
            local = {index: vector.numpy() for index, vector in collected.get(loader_index, {}).items()}
            embeddings = {index: vector for part in gather_objects(local) for index, vector in part.items()}
            if embeddings and datamodule and loader_index >= len(datamodule.pair_sets):  # the identification set
                logged |= self._identification(prefix, embeddings, datamodule.identification)
                continue
            results = (self.verification_results(embeddings, datamodule.pair_sets[loader_index])
                       if embeddings and datamodule else None)
            if results is None:
                continue
            if loader_index == 0:
                self.verification_threshold = results["threshold"]
            for name in ("accuracy", "accuracy_std", "threshold", "val", "far", "auc", "pairs", "smallest_far"):
                logged[f"{prefix}/{name}"] = Logged(float(results[name]), prog_bar=name == "accuracy")
            if results["tar_at_far"] is not None:  # only where the pair set can resolve tar_far
                logged[f"{prefix}/tar_at_far"] = Logged(results["tar_at_far"])
        return logged

    def _identification(self, prefix: str, embeddings: dict[int, np.ndarray],
                        images: IdentificationSet) -> dict[str, Logged]:
        """Open-set identification metrics of the gallery and probe embeddings (by image index)."""
        enrolled = len(images.gallery_identities)
        gallery = [i for i in range(enrolled) if i in embeddings]
        probes = [i for i in range(enrolled, enrolled + len(images.probe_identities)) if i in embeddings]
        results = identification_metrics(
            np.stack([embeddings[i] for i in gallery]), [images.gallery_identities[i] for i in gallery],
            np.stack([embeddings[i] for i in probes]), [images.probe_identities[i - enrolled] for i in probes],
            self.hparams.identification_fars)
        # a DIR the impostors cannot resolve is left out
        return {f"{prefix}/{name}": Logged(float(value)) for name, value in results.items() if value is not None}

    @torch.no_grad()
    def embed(self, images: list[torch.Tensor]) -> np.ndarray:
        """Unit embeddings of uint8 ``(3, H, W)`` images, each resized whole to the task's resolution as in
        training (no crop: the face fills the picture)."""
        transform = Augmentation().eval_transform(self.hparams.resolution, 1.0)
        batch = torch.stack([transform(image) for image in images]).to(self.backbone.input_mean.device)
        return self(self.backbone.normalize(batch)).float().cpu().numpy()

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """Per image: the file and its embedding, one column per dimension."""
        embeddings = self.model(batch["image"]).tolist()
        return [{"file": file, **{f"e{i}": round(v, 7) for i, v in enumerate(vector)}}
                for file, vector in zip(batch["file"], embeddings)]

    def distillation_criterion(self, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor,
                               temperature: float) -> EmbeddingDistillation:
        """The paper's FaceNet distillation: squared L2 to the teacher's embedding (through a learned projection
        when the sizes differ)."""
        return EmbeddingDistillation(student_outputs.shape[1], teacher_outputs.shape[1])

    def export_module(self) -> EmbeddingExport:
        return EmbeddingExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """Verification accuracy and AUC of the exported embeddings over the data's pairs."""
        embeddings: dict[int, np.ndarray] = {}
        for batch, (vectors,) in outputs:
            embeddings.update(zip(batch["label"].tolist(), vectors))
        results = self.verification_results(embeddings, datamodule.pair_sets[0])
        if results is None:
            raise ValueError(f"no verification pair of the {stage} split has both its images")
        return {"accuracy": float(results["accuracy"]), "auc": float(results["auc"])}


class FaceEmbeddingTask(FaceEmbedding, BaseTask):
    """FaceEmbedding as a LightningModule: what ``class_path: FaceEmbeddingTask`` builds (a distiller's student and a multi-task
    head take ``FaceEmbedding``)."""
