"""The tasks the ``mobilenets`` command knows, by name, without importing them (the command starts fast).

Adding a task = adding its package and one ``register_task`` line here (or, for a task living elsewhere, a
``register_task`` call before the command runs). Importing a task package registers its classes for configs'
short names (``class_path: ClassificationTask``) and its tables for ``mobilenets profile``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["TASKS", "TaskEntry", "import_tasks", "register_task", "synthetic_writer"]


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


def import_tasks() -> list[Any]:
    """Import every registered task package (their classes and profile tables register themselves)."""
    return [importlib.import_module(entry.package) for entry in TASKS.values()]


def synthetic_writer(name: str) -> Callable[..., Any]:
    """The function that writes task ``name``'s synthetic dataset in its real on-disk layout."""
    entry = TASKS[name]
    return getattr(importlib.import_module(entry.package), entry.synthetic)


register_task("classification", "mobilenets.tasks.classification", "write_stanford_dogs")
register_task("detection", "mobilenets.tasks.detection", "write_coco")
register_task("face_attributes", "mobilenets.tasks.face_attributes", "write_celeba")
register_task("face_embedding", "mobilenets.tasks.face_embedding", "write_faces")
register_task("geolocation", "mobilenets.tasks.geolocation", "write_geotagged")
