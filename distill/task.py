"""DistillationTask: a student task of this suite trained to imitate a frozen teacher (paper Sections 4.4-4.5).

The student keeps its own evaluation (``val/mAP``, ``val/top1`` ... stay comparable with its supervised run);
training adds the teacher's targets on labeled and unlabeled images. The student is used through the task protocol
(its data setup, loss, evaluation steps and ends, optimizer), whose values this module logs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mobilenets.backbone import check_resolution
from mobilenets.core.checkpoint import checkpoint_type, read_checkpoint
from mobilenets.core.errors import SettingError
from mobilenets.core.io import replacing
from mobilenets.distill.cache import TeacherCache
from mobilenets.distill.losses import HintLoss
from mobilenets.tasks.base import (
    TaskParts,
    concat_outputs,
    log_values,
    monitored_checkpoint,
    parts_class,
    run_context,
)
from mobilenets.tasks.data.loading import built_part
from mobilenets.tasks.distillation import (
    SemiSupervisedDataModule,
    TeacherConfig,
    batch_parts,
    hard_soft_mix,
    load_teacher,
)

__all__ = ["DistillationTask", "HintConfig", "save_student", "trained_task"]


@checkpoint_type
@dataclass(frozen=True)
class HintConfig:
    """A FitNets hint: the student's backbone layer ``student_layer`` (paper numbering) learns, through a 1x1
    adapter, to match the teacher module ``teacher_module`` (its name inside the teacher model, e.g.
    ``model.backbone.features.layer11`` for a suite checkpoint or ``layer3`` for a torchvision ResNet)."""

    student_layer: int = 11
    teacher_module: str = "model.backbone.features.layer11"
    weight: float = 1.0


class _Capture:
    """Collects a module's outputs, call after call, through a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.maps: list[Tensor] = []
        module.register_forward_hook(lambda _module, _args, output: self.maps.append(output))

    def take(self) -> Tensor:
        maps, self.maps = self.maps, []
        return torch.cat(maps)


class DistillationTask(pl.LightningModule):
    """Train ``student`` (any task of the suite) from a frozen ``teacher``.

    The criterion is the student task's own (``TaskParts.distillation_criterion``): Hinton's soft targets for
    single-label tasks (dogs, geolocation cells), per-attribute BCE against the teacher's probabilities for
    attributes, the squared embedding distance for FaceNet, and per-anchor soft targets plus teacher-weighted box
    offsets for SSD detection (teacher and student SSDs at the same input size, so that they share anchors).
    Labeled batches add the student's own loss: ``hard_weight * own + (1 - hard_weight) * distill``; unlabeled
    batches give the distillation term alone. Images without labels come with the data in a
    ``SemiSupervisedDataModule`` (``label_fraction``, ``unlabeled``); a task's own data module gives labeled ones.

    Args:
        student: the student task's parts (its backbone, resolution, optimizer, metrics): their ``class_path`` and
            ``init_args``, as configs give them (``class_path: Classification``; Python passes the built parts).
        teacher: where the frozen teacher comes from and how it sees its input.
        resolution: the size images are loaded at (the larger of the two models' is best); each model gets its
            own resize and normalisation of the same image.
        temperature: softmax temperature of the soft-target loss.
        hard_weight: weight of the student's own loss on labeled images.
        hint: an optional FitNets feature hint, added with its own weight.
        teacher_cache: a folder for the teacher's outputs, computed once and reused every epoch; training
            images then get the evaluation transform (deterministic inputs). Not with ``hint``.
    """

    def __init__(self, student: TaskParts, teacher: TeacherConfig, resolution: int = 224, temperature: float = 4.0,
                 hard_weight: float = 0.5, hint: HintConfig | None = None, teacher_cache: str | None = None) -> None:
        super().__init__()
        check_resolution(resolution)
        task = built_part(student, TaskParts)
        if isinstance(task, pl.LightningModule):
            parts = parts_class(type(task)).__name__
            raise SettingError(f"the student is a {type(task).__name__}, a LightningModule: give the task's parts, "
                               f"class_path: {parts} (the distiller is the module Lightning drives)")
        self.save_hyperparameters(ignore=["student"])  # the student is recorded as the spec that rebuilds it
        if type(task).distillation_criterion is TaskParts.distillation_criterion:
            raise ValueError(f"{type(task).__name__} cannot be distilled: it defines no distillation_criterion")
        if not 0 <= hard_weight <= 1:
            raise ValueError(f"hard_weight must be in [0, 1], got {hard_weight}")
        if hint is not None and teacher_cache:
            raise ValueError("teacher_cache skips the teacher, so it cannot give hint maps; use one or the other")
        if not task.batched_images and (teacher_cache or hint is not None):
            raise ValueError(f"a {type(task).__name__} student (images at their own sizes) takes neither "
                             f"teacher_cache nor hint")
        self.teacher = load_teacher(teacher, default_task=type(task))
        if task.sizes_left_to_data():  # the student answers the teacher's classes (cells, attributes ...)
            given = getattr(self.teacher.model, "hparams", {})  # a suite checkpoint's task has them
            missing = [name for name in task.size_arguments if name not in given]
            if missing:
                raise ValueError(f"the {type(task).__name__} student leaves {missing[0]} out, and its teacher "
                                 f"({type(self.teacher.model).__name__}) does not give it; set it in the student's "
                                 f"init_args")
            task.build(**{name: given[name] for name in task.size_arguments})
        self.student = task
        self.hparams["student"] = task.spec()  # its sizes included, where the teacher gave them
        self.distill_modules = nn.ModuleDict()
        student_out, teacher_out = self._probe()
        try:
            self.distill_modules["criterion"] = task.distillation_criterion(student_out, teacher_out, temperature)
        except ValueError as error:  # outputs that do not line up: say which teacher
            raise SettingError(f"{teacher.source}: {error}") from None
        self._student_maps = self._teacher_maps = None
        if hint is not None:
            self._student_maps = _Capture(getattr(task.backbone.features, f"layer{hint.student_layer}"))
            self._teacher_maps = _Capture(self.teacher.model.get_submodule(hint.teacher_module))
            self._probe()
            channels = self._student_maps.take().shape[1], self._teacher_maps.take().shape[1]
            self.distill_modules["hint"] = HintLoss(*channels)
        self.caches: dict[str, TeacherCache] = {}

    def _probe(self) -> tuple[Tensor, Tensor]:
        """One image through both models: their output shapes (and hint maps) before training builds on them."""
        image = torch.rand(2, 3, self.hparams.resolution, self.hparams.resolution)
        if not self.student.batched_images:
            image = list(image)
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            outputs = self.student.distill_outputs(self.student_input(image)), self.teacher(image)
        self.student.train(was_training)
        return outputs

    # Lightning calls only this module's hooks: the student's own are handed on below.
    @property
    def monitor(self) -> str:
        return self.student.monitor

    @property
    def mode(self) -> str:
        return self.student.mode

    def student_input(self, images: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        """Images in [0, 1] at the loaded size -> the student's resolution and normalisation (a detection
        student's list of images goes as it is: its SSD transform does both)."""
        if not self.student.batched_images:
            return images
        size = self.student.hparams.resolution
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images = self.student.backbone.normalize(images)
        if self.student.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if stage == "fit":
            if isinstance(datamodule, SemiSupervisedDataModule):
                datamodule.enable_distillation(deterministic=bool(self.hparams.teacher_cache))
            elif self.hparams.teacher_cache:
                raise SettingError("teacher_cache needs the training images without augmentation, which a "
                                   "SemiSupervisedDataModule gives: wrap the data (data.class_path: "
                                   "SemiSupervisedDataModule, data.init_args.datamodule: your data module)")
            if self.hparams.teacher_cache:
                self._open_caches(datamodule)
        self.student.setup_run(run_context(self.trainer, stage))

    def _open_caches(self, datamodule: pl.LightningDataModule) -> None:
        fingerprint = hashlib.sha256(repr((self.hparams.teacher, self.hparams.resolution)).encode()).hexdigest()
        for source, name in (("labeled", "train"), ("unlabeled", "unlabeled")):
            if name in datamodule.datasets:
                dataset = datamodule.datasets[name]
                files = "".join(str(record.path) for record in dataset.records)
                key = hashlib.sha256((fingerprint + files).encode()).hexdigest()
                folder = Path(self.hparams.teacher_cache) / source
                if self.trainer.is_global_zero:  # rank 0 makes the files; the others open them once they exist
                    cache = TeacherCache(folder, len(dataset), key)
                    if cache.outputs is None:
                        with torch.no_grad():
                            width = self.teacher(dataset[0]["image"][None]).reshape(1, -1).shape[1]
                        cache.create(width)
                self.trainer.strategy.barrier()
                self.caches[source] = TeacherCache(folder, len(dataset), key)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches stay in [0, 1] (each model prepares its own); evaluation batches are the student's."""
        if self.trainer.training:
            return batch
        return {**batch, "image": self.student_input(batch["image"])}

    def teacher_outputs(self, images: Tensor, indices: Tensor, source: str) -> Tensor:
        """The teacher's outputs for a batch, from the cache where it has them."""
        cache = self.caches.get(source)
        if cache is not None:
            cached = cache.lookup(indices)
            if cached is not None:
                return cached.to(self.device)
        outputs = self.teacher(images)
        if cache is not None:
            cache.store(indices, outputs)
        return outputs

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        student = self.student
        student_outs, teacher_outs, own_loss = [], [], None
        for source, part in batch_parts(batch).items():
            inputs = self.student_input(part["image"])
            if source == "labeled":
                own_loss, outputs, own_logs = student.supervised_loss({**part, "image": inputs})
                log_values(self, own_logs)
            else:
                outputs = student.distill_outputs(inputs)
            student_outs.append(outputs)
            teacher_outs.append(self.teacher_outputs(part["image"], part["index"], source))
        distill = self.distill_modules["criterion"](concat_outputs(student_outs), concat_outputs(teacher_outs))
        size = sum(len(part["image"]) for part in batch_parts(batch).values())
        loss = hard_soft_mix(own_loss, distill, self.hparams.hard_weight)
        if own_loss is not None:
            self.log("train/own_loss", own_loss, batch_size=size)
        if self._student_maps is not None:
            hint = self.distill_modules["hint"](self._student_maps.take(), self._teacher_maps.take())
            self.log("train/hint_loss", hint, batch_size=size)
            loss = loss + self.hparams.hint.weight * hint
        self.log("train/distill_loss", distill, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        log_values(self, self.student.evaluation_step(batch, "val", dataloader_idx))

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        log_values(self, self.student.evaluation_step(batch, "test", dataloader_idx))

    def predict_step(self, batch: dict, batch_idx: int) -> Any:
        return self.student.predict(batch)

    def on_validation_epoch_end(self) -> None:
        log_values(self, self.student.evaluation_end("val", run_context(self.trainer, "validate")))

    def on_test_epoch_end(self) -> None:
        log_values(self, self.student.evaluation_end("test", run_context(self.trainer, "test")))

    def configure_callbacks(self) -> list[pl.Callback]:
        return monitored_checkpoint(self.trainer, self.monitor, self.mode)

    def configure_optimizers(self) -> dict[str, Any]:
        """The student's own optimizer and schedule, over the student and the distillation adapters only."""
        return self.student.build_optimizers(self.trainer.estimated_stepping_batches, self.trainer.max_epochs,
                                             extra_modules=[self.distill_modules])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the teacher out (it is rebuilt from its source); keep what the student needs to stand alone."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        student_checkpoint: dict[str, Any] = {}
        self.student.store_in_checkpoint(student_checkpoint)
        checkpoint["student"] = {
            "class_path": self.student.lightning_class_path,
            "hyper_parameters": self.student.spec()["init_args"],
            "extra": student_checkpoint,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        self.student.restore_from_checkpoint(checkpoint.get("student", {}).get("extra", {}))


def save_student(checkpoint_path: str | Path, output_path: str | Path) -> Path:
    """Write the student of a distillation checkpoint as a checkpoint of its own task, which
    ``mobilenets test/predict --ckpt_path``, ``load_from_checkpoint`` and ``backbone.pretrained`` all take."""
    checkpoint = read_checkpoint(checkpoint_path)
    if "student" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: not a DistillationTask checkpoint (no 'student' entry)")
    student = checkpoint["student"]
    state_dict = {key.removeprefix("student."): value for key, value in checkpoint["state_dict"].items()
                  if key.startswith("student.")}
    output = {
        "state_dict": state_dict,
        "hyper_parameters": {**student["hyper_parameters"], "_class_path": student["class_path"]},
        "pytorch-lightning_version": checkpoint.get("pytorch-lightning_version", pl.__version__),
        "epoch": checkpoint.get("epoch", 0),
        "global_step": checkpoint.get("global_step", 0),
        **student["extra"],
    }
    with replacing(output_path) as partial:
        torch.save(output, partial)
    return Path(output_path)


def trained_task(module: pl.LightningModule) -> TaskParts:
    """The task a trained module holds: a distiller's student (what it deploys and reports), or the task itself."""
    return module.student if isinstance(module, DistillationTask) else module
