"""Tasks and data modules rebuilt from the checkpoints the ``mobilenets`` command writes."""

from __future__ import annotations

import inspect
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from mobilenets.backbone import BackboneConfig
from mobilenets.core.checkpoint import read_checkpoint, weights_only_for
from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.tasks.base import BaseTask, TaskParts, parts_class
from mobilenets.tasks.registry import import_tasks

__all__ = ["MOVED_DATA_SETTINGS", "build_from_config", "build_from_spec", "build_parts_from_config", "built_part", "load_datamodule",
           "load_parts", "load_task"]


def build_from_spec(spec: dict[str, Any], base: type) -> Any:
    """An object of a subclass of ``base`` from its ``class_path`` and ``init_args`` (short names as in configs),
    built by jsonargparse as LightningCLI builds configs (nested classes too)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "built", fail_untyped=False)
    return parser.instantiate(parser.parse_object({"built": spec})).built


#: distillation's data settings (and their defaults), which checkpoints written before they moved to
#: ``SemiSupervisedDataModule`` record on the task's data module (named by its path: the shared data plumbing
#: imports no layer built on it)
MOVED_DATA_SETTINGS = {"label_fraction": 1.0, "unlabeled": None, "match_distillation_steps": False}
_SEMI_SUPERVISED = "mobilenets.tasks.distillation.SemiSupervisedDataModule"


def built_part(value: Any, base: type) -> Any:
    """``value`` as given, or built from the spec a composition records for it (``spec()``: ``class_path`` and
    ``init_args``): Lightning hands a checkpoint's recorded arguments back to the constructor as they are when the
    composition was built in Python, not by the CLI."""
    if isinstance(value, dict) and "class_path" in value:
        import_tasks()  # the short class names of specs as configs give them
        return build_from_spec(value, base)
    return value


def _config_spec(config: str | Path, part: str, init_args: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` or ``data`` (``part``) spec of a Lightning config, ``init_args`` replacing its arguments."""
    import yaml

    from mobilenets.configs import config_path

    spec = (yaml.safe_load(config_path(config).read_text()) or {}).get(part)
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise SettingError(f"{config}: no {part} with a class_path to build")
    import_tasks()  # the configs' short class names
    return {**spec, "init_args": {**(spec.get("init_args") or {}), **init_args}}


def build_from_config(config: str | Path, part: str, **init_args: Any) -> Any:
    """The ``model`` or ``data`` (``part``) a Lightning config describes, ``init_args`` replacing its arguments of
    those names: how the layers above build a task for a benchmark by config, without naming the task."""
    base = pl.LightningModule if part == "model" else pl.LightningDataModule
    return build_from_spec(_config_spec(config, part, init_args), base)


def build_parts_from_config(config: str | Path, **init_args: Any) -> Any:
    """The parts (``TaskParts``) of the task a Lightning config's ``model`` names, ``init_args`` replacing its
    arguments of those names: a student or head for a benchmark, by config."""
    spec = _config_spec(config, "model", init_args)
    return build_from_spec({**spec, "class_path": _parts_class_path(spec["class_path"])}, TaskParts)


def load_task(path: str | Path, task_class: type | None = None) -> pl.LightningModule:
    """The task a checkpoint holds (any ``LightningModule``: a ``BaseTask``, a distiller), in eval mode, its class
    read from the checkpoint (``_class_path``, which the CLI records) unless ``task_class`` is given."""
    path = Path(path)
    hparams = read_checkpoint(path).get("hyper_parameters", {})
    task_class = _task_class(path, hparams, task_class)
    if not issubclass(task_class, pl.LightningModule):
        raise ValueError(f"{path}: {task_class.__name__} is not a LightningModule")
    # The weights are in the checkpoint: the files the fit started from are not read again (they may be gone).
    cleared = _settings_to_load(hparams)
    overrides = {key: value for key, value in cleared.items() if value != hparams[key]}
    task = task_class.load_from_checkpoint(path, map_location="cpu", weights_only=weights_only_for(path), **overrides)
    return task.eval()


def load_parts(path: str | Path, task_class: type | None = None) -> Any:
    """The parts (``TaskParts``) of the task a checkpoint of a task holds, weights and attributes loaded, in eval
    mode: what a suite teacher is. No LightningModule is built, so another module may load them while it is built."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    parts = parts_class(_task_class(path, hparams, task_class))
    if not issubclass(parts, TaskParts) or parts is TaskParts:
        raise ValueError(f"{path}: {parts.__name__} is not the task of one network (a task's checkpoint is)")
    settings = {key: asdict(value) if is_dataclass(value) else value
                for key, value in _settings_to_load(hparams).items() if not key.startswith("_")}
    task = build_from_spec({"class_path": f"{parts.__module__}.{parts.__qualname__}", "init_args": settings},
                           TaskParts)
    task.restore_from_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval()


def _task_class(path: Path, hparams: dict[str, Any], task_class: type | None) -> type:
    class_path = hparams.get("_class_path")
    if task_class is None and not class_path:
        raise ValueError(f"{path}: the checkpoint does not record its task class (no _class_path); pass it")
    return task_class or resolve_class(class_path, None)


def _settings_to_load(settings: dict[str, Any], nested: bool = False) -> dict[str, Any]:
    """A checkpoint's task settings as they are loaded: without the files the fit started from
    (``backbone.pretrained``, ``init_from``), recorded as objects or as the config's mappings; and the same in
    the specs of the parts it holds (a distiller's ``student``, a multi-task model's ``heads``), where a spec
    written before tasks had plain parts names the task's LightningModule (``ClassificationTask``) in place of
    its parts (``Classification``)."""
    cleared = dict(settings)
    backbone = cleared.get("backbone")
    if isinstance(backbone, BackboneConfig):
        cleared["backbone"] = replace(backbone, pretrained=None)
    elif isinstance(backbone, dict) and backbone.get("pretrained"):
        cleared["backbone"] = {**backbone, "pretrained": None}
    if cleared.get("init_from"):
        cleared["init_from"] = None
    for key, value in cleared.items():
        if _is_spec(value):
            cleared[key] = _parts_spec(value)
        elif isinstance(value, dict) and value and all(_is_spec(item) for item in value.values()):
            cleared[key] = {name: _parts_spec(item) for name, item in value.items()}
    return cleared


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value and isinstance(value.get("init_args", {}), dict)


def _parts_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A nested task spec as it loads: its settings cleared (``_settings_to_load``), its class the task's parts."""
    return {**spec, "class_path": _parts_class_path(spec["class_path"]),
            "init_args": _settings_to_load(spec.get("init_args") or {})}


def _parts_class_path(class_path: str) -> str:
    """The class path of a task's parts where ``class_path`` names its LightningModule (``ClassificationTask``),
    else ``class_path`` as it is."""
    found = _class_named(class_path, BaseTask)
    if not (isinstance(found, type) and issubclass(found, BaseTask)):
        return class_path
    parts = parts_class(found)
    return f"{parts.__module__}.{parts.__qualname__}"


def _class_named(class_path: str, base: type) -> Any:
    """The class a spec names, by import path or by the short name configs give a subclass of ``base``."""
    import_tasks()  # the short class names of configs and older specs
    if "." in class_path or ":" in class_path:
        return resolve_class(class_path, None)
    return next((cls for cls in _subclasses(base) if cls.__name__ == class_path), None)


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


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
    settings = {key: asdict(value) if is_dataclass(value) else value for key, value in hparams.items()}
    spec = _data_spec_to_load({"class_path": class_path, "init_args": {**settings, **overrides}})
    return build_from_spec(spec, pl.LightningDataModule)


def _data_spec_to_load(spec: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's data spec as it loads, and the same in the specs of the data modules it holds (a multi-task
    data module's): a data module that no longer takes distillation's data settings an older checkpoint records
    on it is wrapped in a ``SemiSupervisedDataModule`` with them (left out where they are the defaults)."""
    init_args = {key: {name: _data_spec_to_load(item) for name, item in value.items()}
                 if isinstance(value, dict) and value and all(_is_spec(item) for item in value.values())
                 else _data_spec_to_load(value) if _is_spec(value) else value
                 for key, value in (spec.get("init_args") or {}).items()}
    spec = {**spec, "init_args": init_args}
    found = _class_named(spec["class_path"], pl.LightningDataModule)
    takes = inspect.signature(found).parameters if isinstance(found, type) else {}
    moved = {name: init_args[name] for name in MOVED_DATA_SETTINGS if name in init_args and name not in takes}
    if not moved:
        return spec
    inner = {**spec, "init_args": {key: value for key, value in init_args.items() if key not in moved}}
    if all(MOVED_DATA_SETTINGS[name] == value for name, value in moved.items()):
        return inner
    return {"class_path": _SEMI_SUPERVISED, "init_args": {"datamodule": inner, **moved}}
