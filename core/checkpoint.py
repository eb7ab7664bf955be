"""Reading checkpoint files: one place that opens them, with a clear error for a missing file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["read_checkpoint"]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's dictionary (tensors on the CPU)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
