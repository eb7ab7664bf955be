"""Tasks and data modules rebuilt from the checkpoints the ``mobilenets`` command writes."""

from __future__ import annotations

import contextvars
import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from mobilenets.backbone import BackboneConfig
from mobilenets.core.checkpoint import read_checkpoint, weights_only_for
from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class

__all__ = ["build_from_spec", "load_datamodule", "load_task"]


def build_from_spec(spec: dict[str, Any], base: type) -> Any:
    """An object of a subclass of ``base`` from its ``class_path`` and ``init_args`` (short names as in configs).

    Built by jsonargparse as LightningCLI builds configs, but in a fresh context: inside LightningCLI's
    instantiation of another module (a distiller's student, a multi-task model's heads), Lightning would otherwise
    give the inner module the outer one's hyperparameters.
    """
    from jsonargparse import ArgumentParser

    def build() -> Any:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(base, "built", fail_untyped=False)
        return parser.instantiate(parser.parse_object({"built": spec})).built

    return contextvars.Context().run(build)


def load_task(path: str | Path, task_class: type | None = None) -> pl.LightningModule:
    """The task a checkpoint holds (any ``LightningModule``: a ``BaseTask``, a distiller), in eval mode, its class
    read from the checkpoint (``_class_path``, which the CLI records) unless ``task_class`` is given."""
    path = Path(path)
    hparams = read_checkpoint(path).get("hyper_parameters", {})
    class_path = hparams.get("_class_path")
    if task_class is None and not class_path:
        raise ValueError(f"{path}: the checkpoint does not record its task class (no _class_path); pass it")
    task_class = task_class or resolve_class(class_path, None)
    if not issubclass(task_class, pl.LightningModule):
        raise ValueError(f"{path}: {task_class.__name__} is not a LightningModule")
    # A fresh context: inside LightningCLI's instantiation of another module (a distiller loading its teacher),
    # Lightning would otherwise give this task the outer module's hyperparameters.
    # The backbone's weights are in the checkpoint: its pretrained file is not read again (it may be gone).
    backbone = hparams.get("backbone")
    overrides = {"backbone": replace(backbone, pretrained=None)} if isinstance(backbone, BackboneConfig) else {}
    task = contextvars.Context().run(task_class.load_from_checkpoint, path, map_location="cpu",
                                     weights_only=weights_only_for(path), **overrides)
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
    datamodule_class = resolve_class(class_path, None)
    parameters = inspect.signature(datamodule_class).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    unknown = set() if takes_any else set(overrides) - set(parameters)
    if unknown:
        raise SettingError(f"{path}: its data module ({datamodule_class.__name__}) takes no {sorted(unknown)[0]}; "
                           f"change that in the data's config instead")
    return datamodule_class(**{**hparams, **overrides})
