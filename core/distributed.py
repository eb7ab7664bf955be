"""Gathering Python objects across ranks (DDP), and a no-op in a single process."""

from __future__ import annotations

from typing import Any

__all__ = ["gather_objects"]


def gather_objects(item: Any) -> list[Any]:
    """Every rank's ``item``, in rank order (``[item]`` when no process group is running). A collective:
    every rank must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [item]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, item)
    return gathered
