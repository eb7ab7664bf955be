"""Synthetic data for a multi-task model: each head's task writes its own dataset, in its own real layout, into a
folder named after the task (``ROOT/face_attributes``, ``ROOT/face_embedding``), which the head's data module
reads (``data.init_args.datamodules.<head>.init_args.root``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mobilenets.core.errors import SettingError
from mobilenets.tasks.registry import TASKS, synthetic_writer

__all__ = ["write_multitask"]

#: the demo's pair of heads (configs/demo/multitask.yaml)
DEFAULT_TASKS = ("face_attributes", "face_embedding")


def write_multitask(root: str | Path, seed: int = 0, tasks: str | Sequence[str] = DEFAULT_TASKS) -> Path:
    """Write every task's synthetic dataset under ``root/<task>`` with the same ``seed``; ``tasks`` are registered
    task names, a sequence or joined by ``+`` (``mobilenets synth multitask ROOT --option tasks=a+b``)."""
    names = tasks.split("+") if isinstance(tasks, str) else list(tasks)
    unknown = [name for name in names if name not in TASKS or name == "multitask"]
    if unknown:
        raise SettingError(f"write_multitask: no task {unknown[0]!r} to write data for; choose from "
                           f"{sorted(set(TASKS) - {'multitask'})}")
    root = Path(root)
    for name in names:
        synthetic_writer(name)(root / name, seed=seed)  # each task's own writer: this package imports no task
    return root
