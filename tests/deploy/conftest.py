"""The deploy tests' shared fixture: every task briefly trained on its synthetic data, validated, exported."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from mobilenets.backbone import BackboneConfig
from mobilenets.deploy import export_onnx
from mobilenets.tasks.classification import ClassificationTask, DogsDataModule
from mobilenets.tasks.detection import CocoDataModule, DetectionTask
from mobilenets.tasks.face_attributes import CelebADataModule, FaceAttributesTask
from mobilenets.tasks.face_embedding import FaceEmbeddingTask, FaceIdentityDataModule
from mobilenets.tasks.geolocation import GeoDataModule, GeolocationTask

TINY = BackboneConfig(alpha=0.25)


def _tasks(root: Path) -> dict[str, tuple[pl.LightningModule, pl.LightningDataModule]]:
    """A tiny task and its synthetic data for each of the five tasks (the task ready to evaluate on the data)."""
    common = dict(resolution=48, num_workers=0, synthetic=True)
    geo = GeoDataModule(str(root / "geo"), synthetic_options={"num_images": 120, "num_regions": 4}, t1=30, t2=3,
                        coarser=[(80, 3)], max_level=8, batch_size=16, **common)
    geo.prepare_data()
    geo.setup("fit")
    coarse, fine = geo.num_cells
    return {
        "classification": (ClassificationTask(num_classes=3, top_k=2, backbone=TINY, resolution=48),
                           DogsDataModule(str(root / "dogs"), batch_size=8, synthetic_options=dict(
                               num_classes=3, train_per_class=4, test_per_class=3), **common)),
        "attributes": (FaceAttributesTask(num_attributes=10, backbone=TINY, resolution=48),
                       CelebADataModule(str(root / "celeba"), batch_size=8, synthetic_options={"num_images": 40},
                                        **common)),
        "embedding": (FaceEmbeddingTask(backbone=TINY, resolution=48, embedding_dim=16),
                      FaceIdentityDataModule(str(root / "faces"), batch_size=8, synthetic_options=dict(
                          train_identities=4, train_images=4, test_identities=6, test_images=2, folds=2,
                          pairs_per_fold=6), **common)),
        "geolocation": (GeolocationTask(num_cells=fine, coarser_cells=[coarse], backbone=TINY, resolution=48), geo),
        "detection": (DetectionTask(num_classes=4, backbone=TINY, resolution=96, extra_depths=(32, 16, 16, 8)),
                      CocoDataModule(str(root / "coco"), synthetic=True, resolution=96, batch_size=4, num_workers=0,
                                     synthetic_options=dict(train_images=6, val_images=6, image_size=96))),
    }


@pytest.fixture(scope="package")
def validated(tmp_path_factory):
    """Every task after a few training steps, with the metrics Lightning's ``validate`` logs for it."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("deploy")
    results = {}
    for name, (task, data) in _tasks(root).items():
        trainer = pl.Trainer(max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             default_root_dir=root / name,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(task, data)
        (metrics,) = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=root / name).validate(
            task, data, verbose=False)  # detection writes its detections_val.json there
        results[name] = (task.eval(), data, metrics, root / f"{name}.onnx")
        export_onnx(task, results[name][3])
    return results


