"""MultiTask: one MobileNet body feeding several of the suite's task heads, trained jointly, shipped as one graph.

Each head is a task's parts (``FaceAttributes``, ``FaceEmbedding`` ...), built anew on one shared body
(``share_body``) and used only through the task protocol: its data setup (with its own data module), its loss, its
evaluation steps and ends, its export. The values a head reports are logged under its name
(``val/face_attributes/mAP``).
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from mobilenets.core.errors import SettingError
from mobilenets.tasks.base import (
    BaseTask,
    Logged,
    RunContext,
    TaskLoss,
    TaskParts,
    concat_outputs,
    log_values,
    parts_class,
)
from mobilenets.tasks.data.loading import built_part
from mobilenets.tasks.distillation import (
    SemiSupervisedDataModule,
    Teacher,
    TeacherConfig,
    TeacherSpec,
    batch_parts,
    hard_soft_mix,
    load_teacher,
    teacher_config,
)
from mobilenets.tasks.multitask.export import MultiTaskExport
from mobilenets.tasks.multitask.model import MultiHeadNetwork, UncertaintyWeighting

__all__ = ["MultiTask"]

#: arguments every head takes from the multi-task model (one body, one input size); a head's own are refused
SHARED_ARGUMENTS = ("backbone", "resolution")


def _aggregator(name: str) -> Any:
    """A torchjd aggregator by class name (``UPGrad``, ``PCGrad`` ...)."""
    try:
        from torchjd import aggregation
    except ImportError:
        raise SettingError(f"gradient_aggregation {name!r} needs torchjd: pip install 'mobilenet-suite[multitask]'"
                           ) from None
    found = getattr(aggregation, name, None)
    try:
        if isinstance(found, type) and issubclass(found, aggregation.Aggregator):
            return found()
    except TypeError:  # an abstract base, or an aggregator that needs arguments
        pass
    except ImportError as error:  # an aggregator whose solver is an extra of torchjd's
        raise SettingError(f"gradient_aggregation {name!r}: {error}") from None
    raise SettingError(f"gradient_aggregation must be 'sum' or a torchjd aggregator that takes no arguments (UPGrad, "
                       f"PCGrad, MGDA, DualProj, IMTLG, CAGrad ...), got {name!r}")


def _teacher_config(head: str, value: TeacherConfig | dict[str, Any] | str) -> TeacherConfig:
    """A head's teacher (configs' are parsed already; Python's and older checkpoints' may be a mapping or a path),
    refused in one line naming the head where it does not fit."""
    try:
        return teacher_config(value)
    except ValueError as error:
        raise SettingError(f"MultiTask teachers.{head}: {error}") from None


def _check_head(name: str, head: Any) -> None:
    """Refuse, in one line naming the head, what cannot be a head: a name with '/', a LightningModule (a task's
    parts are), images at their own sizes, settings every head takes from the multi-task model."""
    if "/" in name:
        raise SettingError(f"MultiTask head {name!r}: give a name without '/'")
    if isinstance(head, pl.LightningModule) or not isinstance(head, TaskParts):
        fix = f"class_path: {parts_class(type(head)).__name__}" if isinstance(head, BaseTask) else "a task's parts"
        raise SettingError(f"MultiTask head {name!r} is a {type(head).__name__}: give {fix}")
    if not head.batched_images:
        raise SettingError(f"MultiTask head {name!r}: {type(head).__name__} takes images at their own sizes and "
                           f"cannot share batches of one size")
    defaults = inspect.signature(TaskParts.__init__).parameters
    shared = [key for key in SHARED_ARGUMENTS if head.hparams.get(key, defaults[key].default) != defaults[key].default]
    if shared:
        raise SettingError(f"MultiTask head {name!r} sets {shared[0]}: every head shares the model's; set "
                           f"model.init_args.{shared[0]} instead")


def _shared_removed(spec: dict[str, Any]) -> dict[str, Any]:
    """A head's spec without what it takes from the multi-task model (its body, input size, memory layout)."""
    init_args = {key: value for key, value in spec["init_args"].items()
                 if key not in (*SHARED_ARGUMENTS, "channels_last")}
    return {**spec, "init_args": init_args}


class _SharedBody(nn.Module):
    """The body every head holds, as the multi-task model's ``model.backbone``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


class MultiTask(BaseTask):
    """Several task heads on one MobileNet body, each trained on its own data (``MultiTaskDataModule``).

    Args:
        heads: name -> a task's parts (``class_path: FaceAttributes``, ``init_args``; a spec as ``spec()`` gives
            it is built); its ``backbone`` and ``resolution`` are this model's (setting them per head is an error),
            its optimizer arguments are unused (this model's optimizer trains everything).
        loss_weights: name -> a fixed weight of that head's loss (1 where not given), or ``"uncertainty"`` to learn
            them (Kendall et al. 2018: each head's loss scaled by exp(-s) plus s, s learned).
        monitor_head: the head whose validation metric picks the best checkpoint (the first head by default).
        teachers: head name -> the teacher of that head (the paper's face results come from distillation): any
            teacher the distiller takes (``TeacherConfig``: a checkpoint of that head's task, a timm or torchvision
            architecture, any importable model; a plain path is short for ``{checkpoint: PATH}``). That head's
            loss becomes ``hard_weight`` x its own + (1 - ``hard_weight``) x its task's distillation loss
            (``distillation_criterion``) against the teacher's outputs on the same images, and on the head's
            images without labels too where its data module is a ``SemiSupervisedDataModule`` (``label_fraction``,
            ``unlabeled``), as the distiller does.
            Teachers are loaded when ``fit`` starts and are not saved in checkpoints.
        temperature: softmax temperature of the soft-target losses.
        hard_weight: weight of a taught head's own loss.
        gradient_aggregation: how the heads' (weighted) losses move the shared body: ``sum`` (the gradient of their
            sum) or the name of a torchjd aggregator (``UPGrad``, ``PCGrad``, ``MGDA``, ``DualProj``, ``IMTLG``,
            ...: Jacobian descent, which combines the heads' body gradients so that no head's loss is pushed up
            by another's); each head's own parameters always take their own loss's gradient. Needs ``torchjd``
            (``pip install 'mobilenet-suite[multitask]'``), one process and full or bf16 precision.
        **kwargs: the shared task arguments (backbone, resolution, optimizer ...), see ``BaseTask``.
    """

    batched_images = True

    def __init__(self, heads: dict[str, TaskParts], loss_weights: dict[str, float] | str | None = None,
                 monitor_head: str | None = None, teachers: dict[str, TeacherSpec] | None = None,
                 temperature: float = 4.0,
                 hard_weight: float = 0.5, gradient_aggregation: str = "sum", **kwargs: Any) -> None:
        if not heads:
            raise SettingError("MultiTask needs at least one head (model.init_args.heads: {name: task config})")
        heads = {name: built_part(head, TaskParts) for name, head in heads.items()}
        for name, head in heads.items():
            _check_head(name, head)
        if isinstance(loss_weights, str) and loss_weights != "uncertainty":
            raise SettingError(f"loss_weights must be a mapping of head name to weight or 'uncertainty', got "
                               f"{loss_weights!r}")
        unknown = set(loss_weights or {}) - set(heads) if isinstance(loss_weights, dict) else set()
        unknown |= {monitor_head} - set(heads) if monitor_head else set()
        unknown |= set(teachers or {}) - set(heads)
        if unknown:
            raise SettingError(f"MultiTask has no head {sorted(unknown)[0]!r}; its heads are {list(heads)}")
        if not 0 <= hard_weight <= 1:
            raise SettingError(f"hard_weight must be in [0, 1], got {hard_weight}")
        if gradient_aggregation != "sum":
            _aggregator(gradient_aggregation)  # a bad name or a missing solver: an error now, not at the first step
        teacher_configs = {name: _teacher_config(name, value) for name, value in (teachers or {}).items()}
        # configure_models (called by the base's __init__) puts them on the body: nn.Module takes no attribute
        # before its own __init__, so they wait in the instance's dict until then
        object.__setattr__(self, "_given_heads", dict(heads))
        super().__init__(**kwargs)
        self._record_heads()
        self.teacher_configs = teacher_configs
        # Frozen teachers and the losses that compare with them: built when fit starts, kept out of the module tree
        # (so out of checkpoints); the losses' own parameters, if any, train with the rest (configure_optimizers).
        self._teachers: dict[str, Teacher] = {}
        self._criteria: dict[str, nn.Module] = {}
        self._terms: dict[str, torch.Tensor] = {}  # the last training step's weighted loss per head

    def configure_models(self) -> None:
        backbone = self.build_backbone()
        self.model = _SharedBody(backbone)
        self.heads = nn.ModuleDict(self.__dict__.pop("_given_heads"))
        for head in self.heads.values():
            head.share_body(backbone, self.backbone_config, self.hparams.resolution, self.hparams.channels_last)
        if self.hparams.loss_weights == "uncertainty":
            self.uncertainty = UncertaintyWeighting(list(self.heads))

    def _record_heads(self) -> None:
        """Record each head as the spec that rebuilds it (its sizes included, once known), without the settings it
        takes from this model, so that checkpoints rebuild the same model."""
        self.hparams["heads"] = {name: _shared_removed(head.spec()) for name, head in self.heads.items()}

    # ---- what Lightning sees: one module, whose hooks hand each head its own part --------------------------------

    @property
    def monitor(self) -> str:
        name = self.hparams.monitor_head or next(iter(self.hparams.heads))
        return self._prefixed(self.heads[name].monitor, name)

    @property
    def mode(self) -> str:
        return self.heads[self.hparams.monitor_head or next(iter(self.hparams.heads))].mode

    @staticmethod
    def _prefixed(metric: str, head: str) -> str:
        """``val/mAP`` of head ``face_attributes`` -> ``val/face_attributes/mAP``."""
        stage, _, rest = metric.partition("/")
        return f"{stage}/{head}/{rest}" if rest else f"{head}/{stage}"

    def setup_data(self, context: RunContext) -> None:
        """Each head reads its own data module (sizes, names, label balance); a head built only now (its size from
        the data) is put on the shared body, and its size recorded, so checkpoints rebuild the same model."""
        for name, head in self.heads.items():
            built_now = head.sizes_left_to_data()
            head.setup_run(replace(context, datamodule=self._head_data(context.datamodule, name)))
            if built_now:
                head.replace_backbone(self.backbone)
        self._record_heads()
        if context.stage == "fit":
            if self.hparams.teachers and not self._teachers:
                self._load_teachers()
            self._set_up_training_data(context.datamodule)

    @staticmethod
    def _head_data(datamodule: Any, head: str) -> Any:
        """Head ``head``'s own data module (None without a multi-task one, as in plain use)."""
        return datamodule.datamodules[head] if hasattr(datamodule, "datamodules") else None

    def _set_up_training_data(self, datamodule: Any) -> None:
        """Put each taught head's semi-supervised data module in distilling mode (labeled and unlabeled batches,
        as for the distiller); refuse a head that has neither a teacher nor labeled images."""
        for name, head_data in getattr(datamodule, "datamodules", {}).items():
            if name in self._teachers:
                if isinstance(head_data, SemiSupervisedDataModule):
                    head_data.enable_distillation()
            elif not len(head_data.datasets["train"]):
                raise SettingError(f"MultiTask head {name!r} has no labeled training images (its label_fraction is "
                                   f"0 or its list is empty); give it labels or a teacher (model.init_args.teachers)")

    def _load_teachers(self) -> None:
        for name, config in self.teacher_configs.items():
            head = self.heads[name]
            try:
                teacher = load_teacher(config, default_task=type(head)).to(self.device)
            except SettingError as error:
                raise SettingError(f"the teacher of the {name!r} head: {error}") from None
            self._teachers[name] = teacher
            images = torch.rand(2, 3, self.hparams.resolution, self.hparams.resolution, device=self.device)
            was_training = head.training
            head.eval()
            with torch.no_grad():
                probe = head.distill_outputs(self.backbone.normalize(images)), teacher(images)
            head.train(was_training)
            try:
                self._criteria[name] = head.distillation_criterion(*probe, self.hparams.temperature).to(self.device)
            except ValueError as error:  # outputs that do not line up: say which teacher
                raise SettingError(f"the teacher of the {name!r} head, {config.source}: {error}") from None

    def _loaders(self, stage: str) -> list[tuple[str, int, int]]:
        """(head, the head's own loader index, how many loaders it has) for each of ``stage``'s loaders."""
        return self.trainer.datamodule.loader_heads(stage)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer.training:
            return {name: self._prepared(name, part) for name, part in batch.items()}
        head, index, _ = self._loaders(self._evaluating())[dataloader_idx]
        return self.heads[head].prepare_batch(batch)

    def _prepared(self, name: str, part: dict) -> dict:
        """Head ``name``'s training batch as the head prepares its batches (a taught head's: each of its labeled
        and unlabeled parts, keeping the images as loaded for the teacher under ``teacher_image``)."""
        prepare = self.heads[name].prepare_batch
        if name not in self._teachers:
            return prepare(part)
        return {source: prepare({**images, "teacher_image": images["image"]})
                for source, images in batch_parts(part).items()}

    def _evaluating(self) -> str:
        return "test" if self.trainer.testing else "predict" if self.trainer.predicting else "val"

    def training_step(self, batch: dict[str, dict], batch_idx: int) -> torch.Tensor:
        loss, _, logs = self.supervised_loss(batch)
        log_values(self, logs)
        self.log("train/loss", loss, prog_bar=True, batch_size=sum(self._images(name, part)
                                                                  for name, part in batch.items()))
        return loss

    def _images(self, name: str, part: dict) -> int:
        """How many images head ``name``'s training batch holds (a taught head's: labeled and unlabeled)."""
        return sum(len(images["image"]) for images in part.values()) if name in self._teachers else len(part["image"])

    def supervised_loss(self, batch: dict[str, dict]) -> TaskLoss:
        """Every head's loss on its own batch (a taught head's mixed with its teacher's), weighted (fixed or
        learned) and summed; each head's outputs on its labeled images, by head name; and each head's loss (and
        its parts, and learned weight), under the head's name."""
        losses, outputs, logs = {}, {}, {}
        for name, part in batch.items():
            if name in self._teachers:
                head_loss = self._taught_loss(name, part)
            else:
                head_loss = self.heads[name].supervised_loss(part)
            losses[name], outputs[name] = head_loss.loss, head_loss.outputs
            logs |= {self._prefixed(key, name): value for key, value in head_loss.logs.items()}
            logs[f"train/{name}/loss"] = Logged(losses[name], batch_size=self._images(name, part))
        if self.hparams.loss_weights == "uncertainty":
            logs |= {f"train/{name}/weight": Logged(weight) for name, weight in self.uncertainty.weights().items()}
            self._terms = self.uncertainty.terms(losses)
        else:
            weights = self.hparams.loss_weights or {}
            self._terms = {name: weights.get(name, 1.0) * value for name, value in losses.items()}
        return TaskLoss(sum(self._terms.values()), outputs, logs)

    def _taught_loss(self, name: str, part: dict[str, dict]) -> TaskLoss:
        """As the distiller's: ``hard_weight`` x the head's own loss on its labeled images + (1 - ``hard_weight``)
        x its distillation loss against the teacher on its labeled and unlabeled images (that term alone where a
        batch has no labeled images); and the head's outputs on the labeled ones (None without)."""
        head, own, outputs, student, images, logs = self.heads[name], None, None, [], [], {}
        if "labeled" in part:
            own, outputs, logs = head.supervised_loss(part["labeled"])
            student.append(outputs)
            images.append(part["labeled"]["teacher_image"])
        if "unlabeled" in part:
            student.append(head.distill_outputs(part["unlabeled"]["image"]))
            images.append(part["unlabeled"]["teacher_image"])
        images = torch.cat(images)
        distill = self._criteria[name](concat_outputs(student), self._teachers[name](images))
        logs = {**logs, "train/distill_loss": Logged(distill, batch_size=len(images))}
        return TaskLoss(hard_soft_mix(own, distill, self.hparams.hard_weight), outputs, logs)

    def on_fit_start(self) -> None:
        aggregated = self.hparams.gradient_aggregation != "sum"
        if aggregated and self.trainer.world_size > 1:
            raise SettingError("gradient_aggregation other than 'sum' runs in one process (its body gradients are "
                               "set outside DDP's synchronised backward); use sum, or train on one device")
        if aggregated and "16" in str(self.trainer.precision) and "bf16" not in str(self.trainer.precision):
            raise SettingError("gradient_aggregation other than 'sum' needs 32-bit or bf16 precision (fp16's loss "
                               f"scaling is not applied to each head's loss); got precision {self.trainer.precision}")
        for module in (*self._teachers.values(), *self._criteria.values()):  # kept out of the module tree, so
            module.to(self.device)  # not moved with it (set up before the model reaches its device)
        super().on_fit_start()

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """With a torchjd aggregator: the heads' own parameters (and the loss weights) take the summed loss's
        gradient; the body takes the aggregate of the per-head gradients (the Jacobian's rows)."""
        if self.hparams.gradient_aggregation == "sum":
            return super().backward(loss, *args, **kwargs)
        from torchjd.autojac import backward as jacobian_backward
        from torchjd.autojac import jac_to_grad

        body = [p for p in self.model.backbone.parameters() if p.requires_grad]
        shared = {id(p) for p in body}
        others = [p for p in self.parameters() if p.requires_grad and id(p) not in shared]
        others += [p for criterion in self._criteria.values() for p in criterion.parameters() if p.requires_grad]
        torch.autograd.backward(loss, inputs=others, retain_graph=True)
        # one head at a time: torchjd's batched (vmap) backward gives a zero row for the triplet loss's gradient
        jacobian_backward(list(self._terms.values()), inputs=body, parallel_chunk_size=1)
        jac_to_grad(body, self._jacobian_aggregator)

    @functools.cached_property
    def _jacobian_aggregator(self) -> Any:
        """The torchjd aggregator (kept out of the module tree: it is not part of the model)."""
        return _aggregator(self.hparams.gradient_aggregation)

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """The step of the head whose loader this is (with its own loader index), its values under its name."""
        head, index, _ = self._loaders(stage)[dataloader_idx]
        values = self.heads[head].evaluation_step(batch, stage, index)
        return {self._prefixed(name, head): value for name, value in values.items()}

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """Every head's epoch end, with its own data module, its values under its name."""
        logged = {}
        for name, head in self.heads.items():
            values = head.evaluation_end(stage, replace(context, datamodule=self._head_data(context.datamodule, name)))
            logged |= {self._prefixed(key, name): value for key, value in values.items()}
        return logged

    def configure_optimizers(self) -> dict[str, Any]:
        """One optimizer over the body, every head, the learned loss weights and the distillation losses' own
        parameters (as head parameters)."""
        return self.build_optimizers(self.trainer.estimated_stepping_batches, self.trainer.max_epochs,
                                     extra_modules=list(self._criteria.values()))

    def store_in_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Each head's attributes, and the distillation losses' learned parameters (a projection), kept beside
        the state dict so that a model loaded for inference needs no teacher, and a resumed fit continues them."""
        checkpoint["heads"] = {}
        for name, head in self.heads.items():
            head.store_in_checkpoint(checkpoint["heads"].setdefault(name, {}))
        checkpoint["distillation_criteria"] = {name: criterion.state_dict()
                                               for name, criterion in self._criteria.items()}

    def restore_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, head in self.heads.items():
            head.restore_from_checkpoint(checkpoint.get("heads", {}).get(name, {}))
        for name, state in checkpoint.get("distillation_criteria", {}).items():
            if name in self._criteria:  # a resumed fit (setup loaded the teachers); inference has none
                self._criteria[name].load_state_dict(state)

    # ---- the task protocol ------------------------------------------------------------------------------------

    def inference_network(self) -> MultiHeadNetwork:
        """Images -> every head's network outputs (a tuple in head order), the body computed once: a copy, whose
        body layers are shared across the heads' passes."""
        networks, body = copy.deepcopy(({name: head.inference_network() for name, head in self.heads.items()},
                                        self.backbone))
        return MultiHeadNetwork(networks, body)

    def profile_rows(self) -> list[tuple[str, int, int]]:
        """Each head as a model of its own (the body and its head), their sum, and this model (the body once)."""
        rows = [(f"{name} alone ({type(head).__name__})", *head.profile_rows()[0][1:])
                for name, head in self.heads.items()]
        rows.append(("separate models, together", sum(row[1] for row in rows), sum(row[2] for row in rows)))
        return [*rows, ("MultiTask, one body", *super().profile_rows()[0][1:])]

    def export_module(self) -> MultiTaskExport:
        return MultiTaskExport(self)

    def evaluate_export(self, run: Callable[[torch.Tensor], tuple[np.ndarray, ...]], export: MultiTaskExport,
                        datamodule: Any, stage: str) -> dict[str, float]:
        """Each head's own metric of the shared graph's outputs for it, over its own data (``<head>/<metric>``)."""
        results = {}
        for name, head in self.heads.items():
            def run_head(images: torch.Tensor, part: slice = export.slices[name]) -> tuple[np.ndarray, ...]:
                return run(images)[part]

            own = head.evaluate_export(run_head, export, datamodule.datamodules[name], stage)
            results.update({f"{name}/{metric}": value for metric, value in own.items()})
        return results
