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

__all__ = ["build_from_config", "build_from_spec", "initialize_from", "load_datamodule", "load_task"]


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


def build_from_config(config: str | Path, part: str, **init_args: Any) -> Any:
    """The ``model`` or ``data`` (``part``) a Lightning config describes, ``init_args`` replacing its arguments of
    those names: how the layers above build a task for a benchmark by config, without naming the task."""
    import yaml

    from mobilenets.configs import config_path
    from mobilenets.tasks.registry import import_tasks

    spec = (yaml.safe_load(config_path(config).read_text()) or {}).get(part)
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise SettingError(f"{config}: no {part} with a class_path to build")
    import_tasks()  # the configs' short class names
    base = pl.LightningModule if part == "model" else pl.LightningDataModule
    return build_from_spec({**spec, "init_args": {**(spec.get("init_args") or {}), **init_args}}, base)


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
    # The weights are in the checkpoint: the files the fit started from are not read again (they may be gone).
    cleared = _without_start_files(hparams)
    overrides = {key: value for key, value in cleared.items() if value != hparams[key]}
    task = contextvars.Context().run(task_class.load_from_checkpoint, path, map_location="cpu",
                                     weights_only=weights_only_for(path), **overrides)
    return task.eval()


def _without_start_files(settings: dict[str, Any]) -> dict[str, Any]:
    """Task settings with the files a fit started from left out (``backbone.pretrained``, ``init_from``), also in
    a nested task's settings (a distiller's ``student``), recorded as objects or as the config's mappings."""
    cleared = dict(settings)
    backbone = cleared.get("backbone")
    if isinstance(backbone, BackboneConfig):
        cleared["backbone"] = replace(backbone, pretrained=None)
    elif isinstance(backbone, dict) and backbone.get("pretrained"):
        cleared["backbone"] = {**backbone, "pretrained": None}
    if cleared.get("init_from"):
        cleared["init_from"] = None
    student = cleared.get("student")
    if isinstance(student, dict) and isinstance(student.get("init_args"), dict):
        cleared["student"] = {**student, "init_args": _without_start_files(student["init_args"])}
    return cleared


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


def _task_tensors(path: Path, own: dict[str, Any]) -> dict[str, Any] | None:
    """A Lightning checkpoint's tensors keyed as ``own``'s (a distiller's ``student.`` prefix taken off where that
    fits more of them); None when the file is not a Lightning checkpoint."""
    from mobilenets.core.checkpoint import load_torch_file

    try:
        raw = load_torch_file(path)
    except ValueError:  # TensorFlow, Keras, safetensors...: a backbone weights file
        return None
    if not (isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict) and "pytorch-lightning_version" in raw):
        return None
    tensors = raw["state_dict"]
    unprefixed = {key.removeprefix("student."): value for key, value in tensors.items()}
    return max(tensors, unprefixed, key=lambda candidate: len(set(candidate) & set(own)))


def initialize_from(task: pl.LightningModule, path: str | Path, strict: bool = True) -> str:
    """Load the weights of ``path`` into ``task`` (its ``init_from``): a suite checkpoint's tensors by name, or a
    backbone weights file (any format ``backbone.pretrained`` reads) into the task's backbone. Returns the one
    line that says what was loaded and what was left as built.

    Raises:
        SettingError: ``strict`` and some tensor left unset or of another shape, or nothing fits at all.
    """
    from mobilenets.backbone.weights import read_weights

    path = Path(path)
    own = task.state_dict()
    source = _task_tensors(path, own)
    target = own
    if source is None:  # backbone weights: keyed as the backbone's own tensors, under the task's backbone
        prefix = next(name for name, module in task.named_modules() if module is task.backbone) + "."
        source = {prefix + key: value for key, value in read_weights(path).state_dict.items()}
        target = {key: value for key, value in own.items() if key.startswith(prefix)}
    fits = {key: value for key, value in source.items() if key in target and target[key].shape == value.shape}
    left = sorted(set(target) - set(fits))
    if not fits:
        raise SettingError(f"init_from {path}: none of its {len(source)} tensors fits this {type(task).__name__} "
                           f"(its keys start {sorted(source)[:2]}, the model's {sorted(target)[:2]})")
    if strict and left:
        raise SettingError(f"init_from {path}: {len(left)} of the model's {len(target)} tensors would stay as built "
                           f"(missing or of another shape in the file, e.g. {left[:3]}); set init_strict: false to "
                           f"load the {len(fits)} that fit")
    task.load_state_dict(fits, strict=False)
    parts = sorted({".".join(key.split(".")[:2]) for key in fits})
    return (f"init_from {path}: loaded {len(fits)} of {len(own)} tensors ({', '.join(parts)}); left as built: "
            f"{', '.join(left[:4]) + (f' and {len(left) - 4} more' if len(left) > 4 else '') if left else 'none'}")
