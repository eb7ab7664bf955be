"""The tasks the ``mobilenets`` command knows, by name, without importing them (the command starts fast).

Adding a task = adding its package and one ``register_task`` line here (or, for a task living elsewhere, a
``register_task`` call before the command runs). Every task package has the same rooms (``data``, ``model``,
``task``, ``synthetic``): importing ``task`` and ``data`` registers its classes for configs' short names
(``class_path: ClassificationTask``), importing ``model`` its paper table for ``mobilenets profile``. A package
with subcommands of its own (``evaluate-coco``, ``partition``, ``verify`` ...) or ``mobilenets bench`` targets has a
``commands`` room: ``add_commands(subparsers)`` and ``add_bench_targets(targets)``, both optional, importing
nothing heavy at module level (``mobilenets --help`` imports every ``commands`` room).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["TASKS", "TaskEntry", "command_modules", "import_tables", "import_tasks", "register_commands",
           "register_task", "synthetic_writer"]


@dataclass(frozen=True)
class TaskEntry:
    """A task package, the name of its synthetic-data writer (``mobilenets synth NAME ROOT``), and whether it has
    a ``commands`` room."""

    name: str
    package: str
    synthetic: str
    commands: bool = False


TASKS: dict[str, TaskEntry] = {}
#: the ``commands`` rooms of shared packages (faces ...) and of the layers above (distill, deploy)
COMMAND_MODULES: list[str] = []


def register_task(name: str, package: str, synthetic: str, commands: bool = False) -> TaskEntry:
    """Make a task package known to the command under ``name``."""
    TASKS[name] = TaskEntry(name, package, synthetic, commands)
    return TASKS[name]


def register_commands(module: str) -> None:
    """Make a ``commands`` module outside the task packages known to the command."""
    if module not in COMMAND_MODULES:
        COMMAND_MODULES.append(module)


def command_modules() -> list[str]:
    """Every ``commands`` module: the task packages' (in registration order), then the others'."""
    return [f"{entry.package}.commands" for entry in TASKS.values() if entry.commands] + COMMAND_MODULES


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


register_task("classification", "mobilenets.tasks.classification", "write_stanford_dogs", commands=True)
register_task("detection", "mobilenets.tasks.detection", "write_coco", commands=True)
register_task("face_attributes", "mobilenets.tasks.face_attributes", "write_celeba")
register_task("face_embedding", "mobilenets.tasks.face_embedding", "write_faces", commands=True)
register_task("geolocation", "mobilenets.tasks.geolocation", "write_geotagged", commands=True)
register_task("multitask", "mobilenets.tasks.multitask", "write_multitask")
register_commands("mobilenets.tasks.faces.commands")
