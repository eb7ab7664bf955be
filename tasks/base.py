"""What every task shares: the backbone from one config block, the optimizer and schedule, parameter groups.

Follows torchgeo's BaseTask: the base owns the hyperparameters, model building and optimizer setup; each task
subclass says only what is particular to it (``configure_models``, the loss, the metrics, the steps).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import importlib
import io
import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mobilenets.backbone import BackboneConfig, MobileNetV1, check_resolution

__all__ = ["BaseTask", "PredictionWriter", "load_datamodule", "load_task", "parameter_groups", "resolve_class",
           "replacing", "write_csv", "write_text"]

log = logging.getLogger(__name__)

# The paper's RMSprop (TF's decay 0.9, momentum 0.9, epsilon 1.0), used unless the config says otherwise.
RMSPROP_DEFAULTS = {"alpha": 0.9, "momentum": 0.9, "eps": 1.0}


def resolve_class(name: str, module: Any) -> type:
    """Find ``name`` in ``module`` (``"RMSprop"``) or import it from a dotted path (``"timm.optim.Lamb"``)."""
    if "." in name:
        module_path, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module_path), attr)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{name!r} is not in {module.__name__}; give its name there or a full import path") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's dictionary (on the CPU), with a clear error for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_task(path: str | Path, task_class: type | None = None) -> pl.LightningModule:
    """The task a checkpoint holds (any ``LightningModule``: a ``BaseTask``, a distiller), in eval mode, its class
    read from the checkpoint (``_class_path``, which the CLI records) unless ``task_class`` is given."""
    path = Path(path)
    class_path = read_checkpoint(path).get("hyper_parameters", {}).get("_class_path")
    if task_class is None and not class_path:
        raise ValueError(f"{path}: the checkpoint does not record its task class (no _class_path); pass it")
    task_class = task_class or resolve_class(class_path, None)
    if not issubclass(task_class, pl.LightningModule):
        raise ValueError(f"{path}: {task_class.__name__} is not a LightningModule")
    # A fresh context: inside LightningCLI's instantiation of another module (a distiller loading its teacher),
    # Lightning would otherwise give this task the outer module's hyperparameters.
    task = contextvars.Context().run(task_class.load_from_checkpoint, path, map_location="cpu", weights_only=False)
    return task.eval()


def load_datamodule(path: str | Path, **overrides: Any) -> pl.LightningDataModule:
    """The data module a checkpoint was trained with (its recorded class and arguments), ``overrides`` applied
    (``root`` to read the data from another place, ``batch_size``, ``num_workers`` ...)."""
    hparams = dict(read_checkpoint(path).get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if not class_path:
        raise ValueError(f"{path}: the checkpoint records no data module; train through the mobilenets CLI, or "
                         f"give the data's config")
    return resolve_class(class_path, None)(**{**hparams, **overrides})


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed over ``path`` when the block succeeds and removed when
    it fails: a file at ``path`` is always complete (results, exports, checkpoints, shard indexes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a results file atomically (``replacing``)."""
    with replacing(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows (dicts with the same keys) as CSV, atomically (``write_text``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


class PredictionWriter(BasePredictionWriter):
    """Writes what every task's ``predict_step`` returns (one dict per row) as one CSV or JSON file.

    The ``mobilenets`` command adds it to every run (``--predictions.output_file``); in plain Python, pass it
    in the trainer's callbacks.

    Args:
        output_file: the file to write, JSON if it ends in ``.json``, else CSV; by default
            ``<log dir>/predictions.<the task's prediction_format>``.
    """

    def __init__(self, output_file: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_file = output_file

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        rows = [row for batch in predictions for row in batch]
        if trainer.world_size > 1:  # every rank predicted its own share; rank 0 writes them all
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        default_name = f"predictions.{getattr(pl_module, 'prediction_format', 'csv')}"
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        path = Path(self.output_file or Path(log_dir or trainer.default_root_dir) / default_name)
        if path.suffix == ".json":
            write_text(path, json.dumps(rows))
        else:
            write_csv(path, rows)
        log.info("wrote %d predictions to %s", len(rows), path)


def _skips_weight_decay(module: nn.Module, param_name: str) -> bool:
    # The paper: little or no weight decay on depthwise filters; BN parameters and biases get none either.
    if isinstance(module, _BatchNorm) or param_name == "bias":
        return True
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def parameter_groups(
    model: nn.Module, backbone: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Split trainable parameters into (backbone | head) x (decay | no decay) optimizer groups."""
    backbone_ids = {id(p) for p in backbone.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                key = (id(param) in backbone_ids, _skips_weight_decay(module, name))
                groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": lr * (backbone_lr_mult if in_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": f"{'backbone' if in_backbone else 'head'}/{'no_decay' if no_decay else 'decay'}",
        }
        for (in_backbone, no_decay), params in sorted(groups.items())
    ]


class BaseTask(pl.LightningModule, ABC):
    """Base of every task: builds ``self.model`` (which has a ``backbone``) and its optimizer.

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
        backbone_lr_mult: backbone learning rate = lr x this (fine-tuning often uses 0.1).
        channels_last: keep weights and images in channels-last memory layout (measured faster for
            MobileNet on CPU, see README; also the layout GPUs' mixed precision prefers).
    """

    #: the metric checkpoints and early stopping watch, and whether higher is better
    monitor: str = "val/loss"
    mode: str = "min"
    #: the default file type ``predict`` writes (``PredictionWriter``)
    prediction_format: str = "csv"
    #: how a teacher's outputs teach this task (``mobilenets.distill``): "soft" (single-label logits),
    #: "multilabel" (per-label logits), "embedding" or "detection" (SSD head outputs per anchor)
    distill_loss: str | None = None

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
        backbone_lr_mult: float = 1.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        check_resolution(resolution)
        if lr_scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"lr_scheduler_interval must be 'step' or 'epoch', got {lr_scheduler_interval!r}")
        self.save_hyperparameters()
        self.backbone_config = backbone
        self.configure_models()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @abstractmethod
    def configure_models(self) -> None:
        """Build ``self.model``, an ``nn.Module`` with a ``backbone`` attribute (use ``build_backbone``)."""

    def names_from_data(self, names_attribute: str, size_argument: str, what: str) -> list | None:
        """The data module's label names (``class_names``, ``attribute_names`` ...), refused if their number
        differs from the model's ``size_argument``; None when the data module has none (plain Python use)."""
        names = getattr(getattr(self.trainer, "datamodule", None), names_attribute, None)
        if not names:
            return None
        expected = self.hparams[size_argument]
        if len(names) != expected:
            raise ValueError(
                f"the data has {len(names)} {what} ({', '.join(map(str, names[:5]))}, ...) but the model was built "
                f"for {size_argument}={expected}; set model.init_args.{size_argument}: {len(names)}"
            )
        return list(names)

    def supervised_loss(self, batch: dict) -> tuple[torch.Tensor, Any]:
        """The training loss of a labeled batch and the outputs a teacher teaches (``distill_outputs``'s)."""
        raise NotImplementedError(f"{type(self).__name__} has no supervised_loss, so it cannot be distilled")

    def distill_outputs(self, images: Any) -> Any:
        """What a teacher's outputs are compared with: ``forward``'s, unless a task says otherwise."""
        return self(images)

    def build_backbone(self, num_classes: int = 0) -> MobileNetV1:
        """The backbone described by the ``backbone:`` config block, pretrained weights loaded."""
        return self.backbone_config.build(num_classes)

    @property
    def backbone(self) -> MobileNetV1:
        return self.model.backbone

    def train(self, mode: bool = True) -> BaseTask:
        """Keep a frozen backbone in eval mode, so its BN statistics do not drift while the head trains."""
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.backbone.eval()
        return self

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise ``batch["image"]`` (floats in [0, 1]) with the statistics the backbone's weights expect."""
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
            images = self.backbone.normalize(batch["image"])
            if self.hparams.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            batch["image"] = images
        return batch

    def configure_optimizers(self) -> dict[str, Any]:
        return self.build_optimizers()

    def build_optimizers(self, extra_modules: Sequence[nn.Module] = ()) -> dict[str, Any]:
        """The optimizer and schedule of this task's arguments, over its parameters and those of
        ``extra_modules`` (trained as head parameters: a distiller's projection or hint adapters)."""
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
            scheduler_kwargs["T_max"] = max(
                1, int(self.trainer.estimated_stepping_batches) if by_step else self.trainer.max_epochs
            )
        scheduler = scheduler_class(optimizer, **scheduler_kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": hparams.lr_scheduler_interval, "monitor": self.monitor},
        }
