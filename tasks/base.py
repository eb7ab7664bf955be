"""TaskParts and BaseTask: what every task shares, and the task protocol through which distill, deploy and the CLI
use a task.

A task is its plain parts (``TaskParts``: the network, the loss, the metrics and evaluation, the export, an
``nn.Module`` that needs no Lightning) and a thin ``LightningModule`` over them (``BaseTask``), which configs name
(``class_path: ClassificationTask``). Compositions take the parts: a distiller's student and a multi-task model's
heads are ``TaskParts`` (``class_path: Classification``), so no LightningModule holds another. Follows torchgeo's
BaseTask: the base owns the hyperparameters, model building, the optimizer, checkpointed attributes and the
monitored checkpoint; each task says only what is particular to it.

The *task protocol* (``setup_data``, ``supervised_loss``, ``evaluation_step``, ``evaluation_end``,
``distill_outputs``, ``distillation_criterion``, ``inference_network``, ``export_module``, ``evaluate_outputs``,
``draw``) is how the layers above reach a task's behaviour without knowing which task it is. Its methods take what
they read of the run as arguments (the data module, a ``RunContext``) and return what they report (``Logged``
values) instead of logging: the LightningModule that Lightning drives (the task itself, a distiller, a multi-task
model) logs them, under its own names. Adding a task means adding its package (docs/design.md).
"""
from __future__ import annotations

import inspect
import logging
import types
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.core.mixins import HyperparametersMixin
from pytorch_lightning.utilities.parsing import save_hyperparameters
from torch import nn

from mobilenets.backbone import BackboneConfig, MobileNetV1, check_resolution
from mobilenets.backbone.profile import profile_model
from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.tasks.export import export_batches
from mobilenets.tasks.data.initialization import initialize_from
from mobilenets.tasks.optim import RMSPROP_DEFAULTS, parameter_groups

if TYPE_CHECKING:
    from mobilenets.tasks.export import TaskExport

__all__ = ["BaseTask", "Logged", "ModelNotBuiltError", "RunContext", "TaskLoss", "TaskParts", "concat_outputs",
           "lightning_class", "log_values", "monitored_checkpoint", "parts_class", "run_context"]

log = logging.getLogger(__name__)


def silence_intended_warnings() -> None:
    """Filter the two Lightning warnings that describe what the suite does on purpose (called as tasks are built,
    so that a harness that resets warning filters between runs keeps them)."""
    # The task, not the data, normalises images on the device with the statistics its backbone's weights expect
    # (they travel in its checkpoints); Lightning warns whenever a module overrides this hook beside a data module.
    warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule`")
    # A frozen backbone (freeze_backbone) or a distiller's frozen teacher stays in eval mode while training.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def concat_outputs(outputs: list[Any]) -> Any:
    """Several batches' outputs as one batch (tensors, or dicts of tensors): a distillation loss compares a
    student with its teacher over labeled and unlabeled images at once."""
    if isinstance(outputs[0], dict):
        return {key: torch.cat([out[key] for out in outputs]) for key in outputs[0]}
    return torch.cat(outputs).float()


def monitored_checkpoint(trainer: pl.Trainer, monitor: str, mode: str) -> list[Callback]:
    """A ``ModelCheckpoint`` keeping the best epoch by ``monitor`` in place of Lightning's default (the latest
    epoch); nothing when checkpointing is off, nothing is validated, or the config set up its own checkpoints."""
    callbacks = trainer.checkpoint_callbacks
    default = (len(callbacks) == 1 and type(callbacks[0]) is ModelCheckpoint and callbacks[0].monitor is None
               and callbacks[0].dirpath is None and callbacks[0].filename is None)
    if not default or trainer.limit_val_batches == 0:
        return []
    return [ModelCheckpoint(monitor=monitor, mode=mode, filename="best-{epoch}")]


@dataclass(frozen=True)
class Logged:
    """A value a task reports, and how it is to be logged (``LightningModule.log``'s options).

    ``value`` is a tensor, a number, or a torchmetrics ``Metric`` (Lightning computes and resets it at epoch end).
    """

    value: Any
    batch_size: int | None = None
    prog_bar: bool = False
    sync_dist: bool = False


class TaskLoss(NamedTuple):
    """A task's training loss on a labeled batch (``supervised_loss``)."""

    loss: torch.Tensor
    #: what a teacher's outputs are compared with (``distill_outputs``'s, on these images)
    outputs: Any
    #: the loss's parts or diagnostics worth a curve (``train/loss_box`` ...), by their full names
    logs: dict[str, Logged] = {}


@dataclass(frozen=True)
class RunContext:
    """What a task reads of the run it is in, given by the LightningModule that Lightning drives.

    Args:
        datamodule: the task's own data module (a multi-task model's head gets its head's); None in plain use.
        stage: ``fit``, ``validate``, ``test`` or ``predict``.
        resuming: a fit that continues from a checkpoint (whose weights replace whatever the task loads).
        output_dir: where the task may write files of its evaluation (detections, per-class tables); None where it
            writes none (another DDP rank than the first, Lightning's sanity check, plain use).
    """

    datamodule: Any = None
    stage: str = "fit"
    resuming: bool = False
    output_dir: Path | None = None


def run_context(trainer: pl.Trainer | None, stage: str, datamodule: Any = None) -> RunContext:
    """The ``RunContext`` of a Lightning run (``datamodule``: the trainer's, unless given)."""
    if trainer is None:
        return RunContext(datamodule=datamodule, stage=stage)
    log_dir = trainer.log_dir  # a collective under DDP: every rank asks
    writes = trainer.is_global_zero and not trainer.sanity_checking
    return RunContext(datamodule=datamodule if datamodule is not None else getattr(trainer, "datamodule", None),
                      stage=stage, resuming=trainer.ckpt_path is not None,
                      output_dir=Path(log_dir or trainer.default_root_dir) if writes else None)


def log_values(module: pl.LightningModule, values: dict[str, Logged]) -> None:
    """Log a task's reported values through ``module``, the LightningModule Lightning drives (names are unique
    across a stage's loaders: several test sets' carry the set's name)."""
    for name, logged in values.items():
        module.log(name, logged.value, batch_size=logged.batch_size, prog_bar=logged.prog_bar,
                   sync_dist=logged.sync_dist, add_dataloader_idx=False)


class ModelNotBuiltError(AttributeError):
    """The task's model is asked for before it exists: its size is left to the data, read at ``setup``."""


class TaskParts(HyperparametersMixin, nn.Module, ABC):
    """Base of every task's parts: builds ``self.model`` (which has a ``backbone``), and answers the task protocol.

    A plain ``nn.Module`` (no trainer, no logging): a distiller's student, a multi-task head and a suite teacher are
    these; the task's ``LightningModule`` (``BaseTask``) adds Lightning's hooks over the same parts.

    Args:
        backbone: the shared backbone block (alpha, pretrained path, variant, ...).
        resolution: input size in pixels (the paper's rho x 224).
        lr: base learning rate.
        weight_decay: L2 on conv/FC weights; depthwise filters, BN and biases get none.
        optimizer: a ``torch.optim`` class name or import path; RMSprop gets the paper's settings.
        optimizer_kwargs: extra optimizer arguments (override the RMSprop defaults).
        lr_scheduler: a ``torch.optim.lr_scheduler`` class name or import path, or None.
        lr_scheduler_kwargs: its arguments; CosineAnnealingLR's ``T_max`` defaults to the whole run.
        lr_scheduler_interval: step the schedule every ``"step"`` or every ``"epoch"``.
        freeze_backbone: train only the head; the backbone (and its BN statistics) stays fixed.
        trainable_backbone_layers: train only the last N of the backbone's layers (the paper's 14: conv 0 and
            the 13 depthwise-separable ones), the earlier ones and their BN statistics fixed, as torchvision's
            detectors' argument of that name; None trains all, 0 is ``freeze_backbone``.
        backbone_lr_mult: backbone learning rate = lr x this (fine-tuning often uses 0.1).
        channels_last: keep weights and images in channels-last memory layout (faster for MobileNet on CPU,
            ``mobilenets bench train``; also the layout GPUs' mixed precision prefers).
        init_from: start from the weights of this file (weights only, no optimizer or loop state): any suite
            checkpoint (a task's, or a distiller's student) or a backbone weights file ``backbone.pretrained``
            reads (then only the backbone); the tensors loaded and those left as built are logged in one line.
        init_strict: refuse an ``init_from`` file that leaves any of the model's tensors (its backbone's, for a
            backbone file) unset or of another shape; false keeps what fits (another head, another class count).
        compile: ``torch.compile`` the backbone (the body, where the time goes) for training and evaluation:
            ``true``, or ``torch.compile``'s arguments (``{mode: max-autotune, dynamic: false}``). It compiles in
            place (``nn.Module.compile``), so checkpoints keep their keys and load compiled or not. Off by
            default: compiling takes a minute or more on a CPU before the first step.
    """

    #: the metric the best checkpoint is chosen by (``monitored_checkpoint``), and whether higher is better
    monitor: str = "val/loss"
    mode: str = "min"
    #: attributes saved in checkpoints beside the weights (label names, a threshold) and restored on load
    checkpoint_attributes: tuple[str, ...] = ()
    #: whether a batch's images are one tensor (False: a list of images at their own sizes, as SSD takes them)
    batched_images: bool = True
    #: the constructor arguments that size the model's output (classes, attributes, cells); left None (the first
    #: of them), they are read from the data module when a Trainer sets the task up (``sizes_from``)
    size_arguments: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: BackboneConfig = BackboneConfig(),
        resolution: int = 224,
        lr: float = 0.01,
        weight_decay: float = 4e-5,
        optimizer: str = "RMSprop",
        optimizer_kwargs: dict[str, Any] | None = None,
        lr_scheduler: str | None = "CosineAnnealingLR",
        lr_scheduler_kwargs: dict[str, Any] | None = None,
        lr_scheduler_interval: str = "step",
        freeze_backbone: bool = False,
        trainable_backbone_layers: int | None = None,
        backbone_lr_mult: float = 1.0,
        channels_last: bool = True,
        init_from: str | None = None,
        init_strict: bool = True,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        silence_intended_warnings()
        check_resolution(resolution)
        if init_from and backbone.pretrained:
            raise SettingError(f"init_from ({init_from}) and backbone.pretrained ({backbone.pretrained}) both set the "
                               f"backbone's weights: give one of them")
        if lr_scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"lr_scheduler_interval must be 'step' or 'epoch', got {lr_scheduler_interval!r}")
        self.record_settings(inspect.currentframe())
        backbone.check()  # now, even where the model is built only once the data is known
        self.backbone_config = backbone
        self._frozen: list[nn.Module] = []
        if not self.sizes_left_to_data():
            self._build()

    def record_settings(self, frame: types.FrameType | None) -> None:
        """Record the constructor's arguments (those of every ``__init__`` up from ``frame``) as ``hparams``:
        what the parts were built with, even where a Lightning CLI builds another module around them."""
        save_hyperparameters(self, frame=frame)

    @property
    def lightning_class_path(self) -> str:
        """The import path of the task's LightningModule (``...ClassificationTask``): what configs and
        checkpoints name the task by."""
        task_class = lightning_class(type(self))
        return f"{task_class.__module__}.{task_class.__qualname__}"

    def spec(self) -> dict[str, Any]:
        """``class_path`` and ``init_args`` that rebuild these parts (as configs give them): how a composition
        records its student or heads in its own hyperparameters and checkpoints."""
        init_args = {name: asdict(value) if is_dataclass(value) else value for name, value in self.hparams.items()
                     if not name.startswith("_")}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    @abstractmethod
    def configure_models(self) -> None:
        """Build ``self.model``, an ``nn.Module`` with a ``backbone`` attribute (use ``build_backbone``), and
        whatever else depends on the model's output size (metrics, buffers, label names)."""

    def _build(self) -> None:
        self.configure_models()
        if self.hparams.get("init_from"):
            log.info(initialize_from(self, self.hparams.init_from, self.hparams.init_strict))
        if self.hparams.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._frozen = self._frozen_backbone_parts()
        for module in self._frozen:
            module.requires_grad_(False)
            module.eval()
        if self.hparams.get("compile"):
            options = self.hparams.compile if isinstance(self.hparams.compile, dict) else {}
            self.backbone.compile(**options)
            log.info("%s: the backbone is compiled (torch.compile%s); its first steps take the compiling time",
                     type(self).__name__, f" {options}" if options else "")

    def sizes_left_to_data(self) -> bool:
        """Whether the model's output size was left to the data (its first size argument is None)."""
        return bool(self.size_arguments) and self.hparams.get(self.size_arguments[0]) is None

    def sizes_from(self, datamodule: Any) -> dict[str, Any]:
        """The size arguments' values that a set-up data module implies (its label names, cells ...)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read its size from a data module")

    def build(self, **sizes: Any) -> None:
        """Build the model at the given sizes (the size arguments that were left to the data); they are recorded
        in the hyperparameters, so checkpoints rebuild the same model."""
        self.hparams.update(sizes)
        self._build()

    def setup_run(self, context: RunContext) -> None:
        """Where the config left the model's size to the data, read it from the data module and build the model;
        then ``setup_data``. A composition calls this with each task's own context (a head's data module)."""
        if self.sizes_left_to_data():
            if context.datamodule is None:
                raise ValueError(f"{type(self).__name__}: {self.size_arguments[0]} is not given and there is no "
                                 f"data module to read it from; pass {self.size_arguments[0]}")
            sizes = self.sizes_from(context.datamodule)
            log.info("%s: %s from the data", type(self).__name__,
                     ", ".join(f"{name}={value}" for name, value in sizes.items()))
            self.build(**sizes)
        self.test_names = list(getattr(context.datamodule, "test_names", None) or ["test"])
        self.setup_data(context)

    def setup_data(self, context: RunContext) -> None:
        """Take from the data what the task keeps (label names, partitions, label balance); nothing by default."""

    def __getattr__(self, name: str) -> Any:
        if name == "model" and self.sizes_left_to_data():
            raise ModelNotBuiltError(f"{type(self).__name__} has no model yet: {self.size_arguments[0]} is left to the "
                                 f"data, which a Trainer reads at setup; pass {self.size_arguments[0]} to build it now")
        return super().__getattr__(name)

    def names_from_data(self, datamodule: Any, names_attribute: str, size_argument: str, what: str) -> list | None:
        """The data module's label names (``class_names``, ``attribute_names`` ...), refused if their number
        differs from the model's ``size_argument``; None when there is no data module or it has none."""
        names = getattr(datamodule, names_attribute, None)
        if not names:
            return None
        expected = self.hparams[size_argument]
        if len(names) != expected:
            raise SettingError(
                f"the data has {len(names)} {what} ({', '.join(map(str, names[:5]))}, ...) but the model was built "
                f"for {size_argument}={expected}; set model.init_args.{size_argument}: {len(names)}"
            )
        return list(names)

    def test_prefixes(self) -> list[str]:
        """The metric prefix of each test loader: ``test``, or ``test/<name>`` per set where the data module
        has several test sets (its ``test_names``, read at ``setup_run``)."""
        names = getattr(self, "test_names", None) or ["test"]
        return ["test"] if len(names) == 1 else [f"test/{name}" for name in names]

    def build_backbone(self, num_classes: int = 0) -> MobileNetV1:
        """The backbone described by the ``backbone:`` config block, pretrained weights loaded."""
        return self.backbone_config.build(num_classes)

    @property
    def backbone(self) -> MobileNetV1:
        return self.model.backbone

    def share_body(self, body: MobileNetV1, config: BackboneConfig, resolution: int, channels_last: bool) -> None:
        """Run on a body another model holds (a multi-task model's), built from ``config``, at that model's input
        size and memory layout: the network is built anew for that body's width and put on it (a network whose
        size is left to the data, once built, is put on it by that model)."""
        self.backbone_config = replace(config, pretrained=None)  # the weights are the body's
        self.hparams.update(backbone=self.backbone_config, resolution=resolution, channels_last=channels_last)
        if not self.sizes_left_to_data():
            self._build()
            self.replace_backbone(body)

    def replace_backbone(self, body: MobileNetV1) -> None:
        """Put ``body`` where the model holds its backbone (a multi-task model gives its heads one shared body);
        it must be the same architecture (alpha, depths) the model was built on."""
        self.model.backbone = body

    def _frozen_backbone_parts(self) -> list[nn.Module]:
        """The backbone, or its layers before the last ``trainable_backbone_layers``, that do not train."""
        hparams = self.hparams
        if hparams.freeze_backbone:
            return [self.backbone]
        if hparams.trainable_backbone_layers is None:
            return []
        layers = list(self.backbone.features.children())
        if not 0 <= hparams.trainable_backbone_layers <= len(layers):
            raise ValueError(f"trainable_backbone_layers must be between 0 and {len(layers)} (the backbone's "
                             f"layers), got {hparams.trainable_backbone_layers}")
        return layers[:len(layers) - hparams.trainable_backbone_layers]

    def train(self, mode: bool = True) -> TaskParts:
        """Keep frozen backbone layers in eval mode, so their BN statistics do not drift while the rest trains."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def prepare_batch(self, batch: Any) -> Any:
        """Normalise ``batch["image"]`` (floats in [0, 1]) with the statistics the backbone's weights expect, on the
        device, in the task's memory layout."""
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
            images = self.backbone.normalize(batch["image"])
            if self.hparams.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            batch["image"] = images
        return batch

    def build_optimizers(self, steps: int, epochs: int, extra_modules: Sequence[nn.Module] = ()) -> dict[str, Any]:
        """The optimizer and schedule of this task's arguments, over its parameters and those of
        ``extra_modules`` (trained as head parameters: a distiller's projection or hint adapters); ``steps`` and
        ``epochs``: the run's length, for a schedule that spans it."""
        hparams = self.hparams
        optimizer_class = resolve_class(hparams.optimizer, torch.optim)
        kwargs = dict(RMSPROP_DEFAULTS) if optimizer_class is torch.optim.RMSprop else {}
        kwargs.update(hparams.optimizer_kwargs or {})
        groups = parameter_groups(nn.ModuleList([self, *extra_modules]), self.backbone, hparams.lr,
                                  hparams.weight_decay, hparams.backbone_lr_mult)
        optimizer = optimizer_class(groups, lr=hparams.lr, **kwargs)
        if not hparams.lr_scheduler:
            return {"optimizer": optimizer}
        scheduler_class = resolve_class(hparams.lr_scheduler, torch.optim.lr_scheduler)
        scheduler_kwargs = dict(hparams.lr_scheduler_kwargs or {})
        if scheduler_class is torch.optim.lr_scheduler.CosineAnnealingLR and "T_max" not in scheduler_kwargs:
            by_step = hparams.lr_scheduler_interval == "step"
            scheduler_kwargs["T_max"] = max(1, int(steps) if by_step else epochs)
        scheduler = scheduler_class(optimizer, **scheduler_kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": hparams.lr_scheduler_interval, "monitor": self.monitor},
        }

    def store_in_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put what the task keeps beside its weights (``checkpoint_attributes``) into ``checkpoint``."""
        checkpoint.update({name: getattr(self, name) for name in self.checkpoint_attributes})

    def restore_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take back what ``store_in_checkpoint`` put in (before the weights load: a task may adapt an older
        checkpoint's state dict here)."""
        for name in self.checkpoint_attributes:
            if name in checkpoint:
                setattr(self, name, checkpoint[name])

    def training_loss(self, batch: dict) -> TaskLoss:
        """The loss of the task's own training step: ``supervised_loss``, unless the task trains on its batches
        differently when it trains alone (mixed batches)."""
        return self.supervised_loss(batch)

    # ---- the task protocol ------------------------------------------------------------------------------------

    @abstractmethod
    def supervised_loss(self, batch: dict) -> TaskLoss:
        """The training loss of a labeled batch, the outputs a teacher teaches (``distill_outputs``'s), and any
        parts of the loss worth logging."""

    @abstractmethod
    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """Evaluate one batch of ``stage`` (``val`` or ``test``; the test loader ``dataloader_idx`` where the data
        has several test sets, ``test_prefixes``): update the metrics, and return what to log now (the loss, and
        metrics Lightning computes at epoch end), by full name (``val/top1``)."""

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """The metrics of ``stage`` (``val`` or ``test``) computed once the epoch's batches are in, whose files, if
        any, go to ``context.output_dir``; nothing by default (metrics logged per step)."""
        return {}

    def distill_outputs(self, images: Any) -> Any:
        """What a teacher's outputs are compared with: ``forward``'s, unless a task says otherwise."""
        return self(images)

    def distillation_criterion(self, student_outputs: Any, teacher_outputs: Any, temperature: float) -> nn.Module:
        """The loss that makes this task's ``distill_outputs`` match a teacher's (a module: it may learn, e.g. a
        projection), built from one probe batch of each; refuses outputs that cannot be matched."""
        raise NotImplementedError(f"{type(self).__name__} cannot be distilled: it defines no distillation_criterion")

    def inference_network(self) -> nn.Module:
        """The image-in module whose outputs the task post-processes, and whose size the paper counts."""
        return self.model

    def profile_rows(self) -> list[tuple[str, int, int]]:
        """(what, MACs, parameters) of the inference network at the task's resolution, counted the paper's way,
        for ``mobilenets profile --config``; a model of several parts lists them too."""
        profile = profile_model(self.inference_network(), self.hparams.resolution)
        return [(type(self).__name__, profile.macs, profile.params)]

    def export_module(self) -> TaskExport:
        """The deployable inference graph: images in [0, 1] -> the task's post-processed outputs."""
        raise NotImplementedError(f"{type(self).__name__} defines no export_module, so it cannot be exported")

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """The task's own metric over an exported model's outputs: ``outputs`` pairs every batch of the
        ``stage`` split (its images made the export's input) with the export's ``output_names`` arrays."""
        raise NotImplementedError(f"{type(self).__name__} defines no evaluate_outputs")

    def evaluate_export(self, run: Callable[[torch.Tensor], tuple[np.ndarray, ...]], export: TaskExport,
                        datamodule: Any, stage: str) -> dict[str, float]:
        """The task's own metric (``evaluate_outputs``) of an exported model, ``run`` (images in [0, 1] -> the
        export's outputs as arrays), over the data module's ``stage`` split."""
        loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
        outputs = ((batch, run(batch["image"])) for batch in export_batches(loader, export.resolution))
        return self.evaluate_outputs(outputs, datamodule, stage)

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """One dict per image of a predict batch (``predict``'s rows: the file and the task's answer)."""
        raise SettingError(f"{type(self).__name__} defines no predict, so mobilenets predict cannot run it")

    def draw(self, datamodule: Any, path: Path) -> Path | None:
        """A picture of the task's predictions on a few evaluation images (the demo's figures); None if the task
        has nothing to draw beyond its metrics."""
        return None


class BaseTask(TaskParts, pl.LightningModule):
    """A task's parts as the ``LightningModule`` that configs name: each hook a call of the task protocol, whose
    reported values it logs. A task defines it beside its parts, with nothing of its own::

        class ClassificationTask(Classification, BaseTask):
            \"\"\"Classification as a LightningModule.\"\"\"
    """

    def record_settings(self, frame: types.FrameType | None) -> None:
        """Lightning's record: the config the CLI built this module from (with its class), or the arguments."""
        self.save_hyperparameters(frame=frame)

    def setup(self, stage: str) -> None:
        self.setup_run(run_context(self.trainer, stage))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.prepare_batch(batch)

    def configure_optimizers(self) -> dict[str, Any]:
        return self.build_optimizers(self.trainer.estimated_stepping_batches, self.trainer.max_epochs)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _, logs = self.training_loss(batch)
        log_values(self, logs)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        log_values(self, self.evaluation_step(batch, "val", dataloader_idx))

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        log_values(self, self.evaluation_step(batch, "test", dataloader_idx))

    def on_validation_epoch_end(self) -> None:
        log_values(self, self.evaluation_end("val", run_context(self.trainer, "validate")))

    def on_test_epoch_end(self) -> None:
        log_values(self, self.evaluation_end("test", run_context(self.trainer, "test")))

    def configure_callbacks(self) -> list[Callback]:
        return monitored_checkpoint(self.trainer, self.monitor, self.mode)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        return self.predict(batch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.store_in_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restore_from_checkpoint(checkpoint)


def parts_class(task_class: type) -> type[TaskParts]:
    """The plain parts of a task's ``LightningModule`` (``ClassificationTask`` -> ``Classification``); a parts class
    is its own."""
    if not issubclass(task_class, BaseTask):
        return task_class
    found = next((base for base in task_class.__mro__[1:]
                  if issubclass(base, TaskParts) and not issubclass(base, BaseTask) and base is not TaskParts), None)
    if found is None:
        raise ValueError(f"{task_class.__name__} is a LightningModule of no task's parts")
    return found


def lightning_class(parts: type[TaskParts]) -> type[BaseTask]:
    """The ``LightningModule`` of a task's parts, defined beside them (``Classification`` -> ``ClassificationTask``):
    what its checkpoints name."""
    if issubclass(parts, BaseTask):
        return parts
    shells = [cls for cls in parts.__subclasses__() if issubclass(cls, BaseTask)]
    if len(shells) != 1:
        raise ValueError(f"{parts.__name__}: expected one LightningModule defined over it (class "
                         f"{parts.__name__}Task({parts.__name__}, BaseTask)), found {len(shells)}")
    return shells[0]
