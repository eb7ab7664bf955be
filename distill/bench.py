"""``mobilenets bench distill``: what the teacher-output cache saves, measured in one process.

The same distillation (a 1.0 MobileNet-224 teacher, a 0.25 MobileNet-128 student, synthetic Stanford Dogs with
a fifth of the labels) runs for a few epochs without the cache and with it; the table gives training images per
second per epoch. Benchmarks only: nothing here is asserted in tests.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from mobilenets.core.tables import Table
from mobilenets.distill.task import DistillationTask
from mobilenets.tasks.data.loading import build_from_config, build_parts_from_config
from mobilenets.tasks.distillation import SemiSupervisedDataModule, TeacherConfig

__all__ = ["bench_teacher_cache"]

#: the config whose model and data the benchmark distils (the demo's dogs, a 1.0 teacher, a 0.25 student)
CONFIG = "demo/dogs.yaml"


class _EpochSpeed(pl.Callback):
    """Training images per second of each epoch (loader, student step and teacher or cache together)."""

    def __init__(self) -> None:
        self.speeds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        self.images += sum(len(part["image"]) for part in batch.values() if part is not None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.speeds.append(self.images / (time.perf_counter() - self.start))


def bench_teacher_cache(epochs: int = 3, batches: int = 6, batch_size: int = 32, threads: int = 2) -> Table:
    """Images per second of distillation epochs without and with ``teacher_cache``."""
    torch.set_num_threads(threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    rows, baseline = [], None
    with tempfile.TemporaryDirectory() as scratch:
        teacher_task = build_from_config(CONFIG, "model", num_classes=6, backbone={"alpha": 1.0}, resolution=224)
        checkpoint = Path(scratch) / "teacher.ckpt"
        torch.save({"state_dict": teacher_task.state_dict(), "hyper_parameters": dict(teacher_task.hparams),
                    "pytorch-lightning_version": pl.__version__}, checkpoint)
        for cached in (False, True):
            student = build_parts_from_config(CONFIG, num_classes=6, backbone={"alpha": 0.25}, resolution=128)
            task = DistillationTask(student, TeacherConfig(checkpoint=str(checkpoint)), resolution=224,
                                    teacher_cache=str(Path(scratch) / "cache") if cached else None)
            dogs = build_from_config(CONFIG, "data", root=str(Path(scratch) / "dogs"), synthetic=True,
                                     synthetic_options={"num_classes": 6, "train_per_class": 60, "test_per_class": 1},
                                     resolution=224, batch_size=batch_size, num_workers=2, val_fraction=0)
            data = SemiSupervisedDataModule(dogs, label_fraction=0.2)
            speed = _EpochSpeed()
            trainer = pl.Trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0,
                                 num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False, callbacks=[speed])
            trainer.fit(task, data)
            later = statistics.median(speed.speeds[1:])
            baseline = baseline or later
            rows.append(["teacher cache" if cached else "no cache", f"{speed.speeds[0]:.1f}", f"{later:.1f}",
                         f"{later / baseline:.2f}"])
    return Table(
        key="bench_distill",
        title=f"Distillation, teacher 1.0 MobileNet-224 -> student 0.25 MobileNet-128, batch {batch_size} labeled + "
              f"{batch_size} unlabeled, {batches} steps per epoch ({threads} threads)",
        columns=["setting", "epoch 1 img/s", f"epochs 2-{epochs} img/s (median)", "speed-up"],
        rows=rows,
    )
