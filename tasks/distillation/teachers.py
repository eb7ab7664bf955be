"""Teachers: frozen models that see the student's images at their own resolution and normalisation, for the
distiller and for a taught multi-task head alike.

A teacher is a checkpoint of any task in this suite, a torchvision or timm architecture by name with a local
weights file, or any importable ``nn.Module`` class. It stays in eval mode without gradients whatever the
trainer does, and is left out of the optimizer and of the saved student.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import register_type
from torch import Tensor, nn
from torch.nn import functional as F

from mobilenets.backbone.weights import read_state_dict_file
from mobilenets.core.checkpoint import checkpoint_type, read_checkpoint
from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.tasks.base import TaskParts, lightning_class
from mobilenets.tasks.data.loading import load_parts

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Teacher", "TeacherConfig", "TeacherSpec", "load_teacher",
           "teacher_config"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@checkpoint_type
@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher comes from (exactly one of ``checkpoint``, ``arch``, ``class_path``) and how it sees
    its input.

    Args:
        checkpoint: a Lightning checkpoint of any task in this suite (e.g. a 1.0-224 MobileNet trained with
            ``mobilenets fit``); its resolution and normalisation are its own unless given here.
        task: the task class of ``checkpoint`` when the checkpoint does not name it (checkpoints written by
            ``mobilenets fit`` do); defaults to the student's class.
        arch: ``torchvision:<name>`` or ``timm:<name>``, built without downloading and loaded from ``weights``.
        class_path: any importable ``nn.Module`` class, built with ``init_args`` and loaded from ``weights``.
        init_args: keyword arguments for ``arch`` (e.g. ``num_classes``) or ``class_path``.
        weights: a local state-dict file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``) for ``arch`` or
            ``class_path``.
        resolution: the teacher's input size (default: the checkpoint's, else 224).
        mean: the teacher's input normalisation mean (default: the checkpoint's, else ImageNet's).
        std: the teacher's input normalisation standard deviation (default alike).
        compile: ``torch.compile`` the teacher's network (``true``, or ``torch.compile``'s arguments); the
            student compiles with its own task's ``compile``.
    """

    checkpoint: str | None = None
    task: str | None = None
    arch: str | None = None
    class_path: str | None = None
    init_args: dict[str, Any] | None = None
    weights: str | None = None
    resolution: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    compile: bool | dict[str, Any] = False

    def __post_init__(self) -> None:
        sources = [name for name in ("checkpoint", "arch", "class_path") if getattr(self, name)]
        if len(sources) != 1:
            raise ValueError(f"a teacher needs exactly one of checkpoint, arch, class_path; got {sources or 'none'}")
        if self.checkpoint and self.weights:
            raise ValueError("weights is for arch or class_path teachers; a checkpoint carries its own")

    @property
    def source(self) -> str:
        """Where the teacher comes from, for messages: the checkpoint, or the architecture and its weights."""
        if self.checkpoint:
            return str(self.checkpoint)
        return f"teacher {self.arch or self.class_path}" + (f" ({self.weights})" if self.weights else "")


_FIELDS = [field.name for field in fields(TeacherConfig)]


def teacher_config(value: TeacherConfig | dict[str, Any] | str) -> TeacherConfig:
    """A teacher as configs give it: ``TeacherConfig``'s fields, or a checkpoint's path alone; a field that is not
    one is refused naming the closest ones."""
    if isinstance(value, TeacherConfig):
        return value
    if isinstance(value, str):
        return TeacherConfig(checkpoint=value)
    if not isinstance(value, dict):
        raise ValueError(f"a teacher is a mapping of {', '.join(_FIELDS)} or a checkpoint's path, got {value!r}")
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], _FIELDS, n=2)
        raise ValueError(f"a teacher takes no {unknown[0]!r}" + (f"; did you mean {' or '.join(close)}?" if close
                                                                 else f"; it takes {', '.join(_FIELDS)}"))
    return TeacherConfig(**value)


class TeacherSpec(TeacherConfig):
    """The type of a teacher inside a mapping of them (a multi-task model's ``teachers``), which jsonargparse parses
    with ``teacher_config`` into a ``TeacherConfig``: its own type, because jsonargparse reads a mapping's dataclass
    values that have ``class_path`` and ``init_args`` fields as subclass specs."""


register_type(TeacherSpec, serializer=asdict, deserializer=teacher_config)


class Teacher(nn.Module):
    """A frozen model behind its own preprocessing: images in [0, 1] at any size in, outputs out.

    ``prepare`` resizes (antialiased) to ``resolution``, normalises, and lays the images out channels-last where
    the teacher trains so, so a 224-px teacher and a 128-px student are taught from one loaded image. A suite
    task answers with what its students are compared with (``TaskParts.distill_outputs``).
    """

    def __init__(self, model: nn.Module, resolution: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.suite_task = isinstance(model, TaskParts)
        #: False for a teacher that takes a list of images at their own sizes (an SSD: its transform resizes them)
        self.batched_images = not self.suite_task or model.batched_images
        self.channels_last = self.suite_task and bool(model.hparams.get("channels_last"))

    def train(self, mode: bool = True) -> Teacher:
        """Always eval: the trainer's ``train()`` must not switch the teacher's BN or dropout on."""
        return super().train(False)

    def prepare(self, images: Tensor) -> Tensor:
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="bilinear",
                                   antialias=True, align_corners=False)
        images = (images - self.mean) / self.std
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    @torch.no_grad()
    def forward(self, images: Tensor | list[Tensor]) -> Any:
        """The teacher's outputs for images in [0, 1] (a list of them for a teacher that takes images at their
        own sizes, which prepares them itself)."""
        if not self.batched_images:
            return self.model.distill_outputs(images)
        prepared = self.prepare(images)
        return self.model.distill_outputs(prepared) if self.suite_task else self.model(prepared)


def _suite_teacher(config: TeacherConfig, default_task: type | None) -> Teacher:
    path = Path(config.checkpoint)
    hparams = read_checkpoint(path).get("hyper_parameters", {})
    task_path = config.task or hparams.get("_class_path")
    task_class = resolve_class(task_path) if task_path else default_task
    if task_class is None or not issubclass(task_class, TaskParts):
        raise ValueError(f"{path}: cannot tell which task it holds; set teacher.task (e.g. ClassificationTask's "
                         f"import path)")
    if default_task is not None and not issubclass(task_class, default_task):
        expected = lightning_class(default_task).__name__
        raise SettingError(f"{path} is a {task_class.__name__} checkpoint: it cannot teach a {expected} student; give "
                           f"a {expected} checkpoint (or a timm / torchvision teacher)")
    task = load_parts(path, task_class)
    backbone = task.backbone
    return Teacher(
        task,
        config.resolution or task.hparams.resolution,
        config.mean or tuple(backbone.input_mean.flatten().tolist()),
        config.std or tuple(backbone.input_std.flatten().tolist()),
    )


def _built_teacher(config: TeacherConfig) -> Teacher:
    kwargs = dict(config.init_args or {})
    if config.arch:
        library, _, name = config.arch.partition(":")
        if library == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None, **kwargs)
        elif library == "timm":
            import timm

            model = timm.create_model(name, pretrained=False, **kwargs)
        else:
            raise ValueError(f"teacher arch must be 'torchvision:<name>' or 'timm:<name>', got {config.arch!r}")
    else:
        model = resolve_class(config.class_path)(**kwargs)
    if config.weights:
        state_dict = read_state_dict_file(config.weights)
        result = model.load_state_dict(state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{config.weights} does not fit the teacher {config.arch or config.class_path}: "
                             f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return Teacher(model, config.resolution or 224, config.mean or IMAGENET_MEAN, config.std or IMAGENET_STD)


def load_teacher(config: TeacherConfig, default_task: type | None = None) -> Teacher:
    """Build the frozen teacher ``config`` describes (``default_task``: the class of an unnamed checkpoint)."""
    teacher = _suite_teacher(config, default_task) if config.checkpoint else _built_teacher(config)
    if config.compile:
        teacher.model.compile(**(config.compile if isinstance(config.compile, dict) else {}))
    return teacher
