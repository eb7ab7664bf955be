"""The tasks the ``mobilenets`` command knows, by name, without importing them (the command starts fast).

Adding a task = adding its package and one ``register_task`` line here (or, for a task living elsewhere, a
``register_task`` call before the command runs). Every task package has the same rooms (``data``, ``model``,
``task``, ``synthetic``): importing ``task`` and ``data`` registers its classes for configs' short names
(``class_path: ClassificationTask``), importing ``model`` its paper table for ``mobilenets profile``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["TASKS", "TaskEntry", "import_tables", "import_tasks", "register_task", "synthetic_writer"]


@dataclass(frozen=True)
class TaskEntry:
    """A task package and the name of its synthetic-data writer (``mobilenets synth NAME ROOT``)."""

    name: str
    package: str
    synthetic: str


TASKS: dict[str, TaskEntry] = {}


def register_task(name: str, package: str, synthetic: str) -> TaskEntry:
    """Make a task package known to the command under ``name``."""
    TASKS[name] = TaskEntry(name, package, synthetic)
    return TASKS[name]


def import_tasks() -> None:
    """Import every registered task's ``task`` and ``data`` modules (their classes become known to configs)."""
    for entry in TASKS.values():
        for room in ("task", "data"):
            importlib.import_module(f"{entry.package}.{room}")


def import_tables() -> None:
    """Import every registered task's ``model`` module (its paper table registers for ``mobilenets profile``)."""
    for entry in TASKS.values():
        importlib.import_module(f"{entry.package}.model")


def synthetic_writer(name: str) -> Callable[..., Any]:
    """The function that writes task ``name``'s synthetic dataset in its real on-disk layout."""
    entry = TASKS[name]
    return getattr(importlib.import_module(entry.package), entry.synthetic)


register_task("classification", "mobilenets.tasks.classification", "write_stanford_dogs")
register_task("detection", "mobilenets.tasks.detection", "write_coco")
register_task("face_attributes", "mobilenets.tasks.face_attributes", "write_celeba")
register_task("face_embedding", "mobilenets.tasks.face_embedding", "write_faces")
register_task("geolocation", "mobilenets.tasks.geolocation", "write_geotagged")
register_task("multitask", "mobilenets.tasks.multitask", "write_multitask")
