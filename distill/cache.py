"""Teacher outputs computed once into memory-mapped files and reused every epoch.

The teacher is usually most of a distillation step's compute; when its inputs are deterministic (no
augmentation) its outputs never change, so one pass fills the cache and later epochs only read it. numpy's
``open_memmap`` is the storage: rows are written in place, shared by processes on one machine, and never
loaded whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import Tensor

__all__ = ["TeacherCache"]


class TeacherCache:
    """Per-sample teacher outputs of one dataset, keyed by the sample's index.

    Args:
        folder: where ``outputs.npy``, ``filled.npy`` and ``meta.json`` live.
        num_samples: the dataset's length.
        fingerprint: what the outputs depend on (teacher, data); a cache made for another is started afresh.
    """

    def __init__(self, folder: str | Path, num_samples: int, fingerprint: str) -> None:
        self.folder, self.num_samples, self.fingerprint = Path(folder), num_samples, fingerprint
        self.outputs: np.ndarray | None = None
        self.filled: np.ndarray | None = None
        meta = self.folder / "meta.json"
        if meta.is_file() and json.loads(meta.read_text()) == self._meta() and (self.folder / "outputs.npy").is_file():
            self.outputs = open_memmap(self.folder / "outputs.npy", mode="r+")
            self.filled = open_memmap(self.folder / "filled.npy", mode="r+")

    def _meta(self) -> dict:
        return {"num_samples": self.num_samples, "fingerprint": self.fingerprint}

    def create(self, width: int, dtype: np.dtype = np.float32) -> None:
        """Make empty files for ``width`` values per sample (under DDP rank 0 does this before training, so that
        no two processes create them at once)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "meta.json").unlink(missing_ok=True)  # incomplete until meta.json is written
        self.outputs = open_memmap(self.folder / "outputs.npy", mode="w+", dtype=dtype,
                                   shape=(self.num_samples, width))
        self.filled = open_memmap(self.folder / "filled.npy", mode="w+", dtype=np.uint8, shape=(self.num_samples,))
        (self.folder / "meta.json").write_text(json.dumps(self._meta()))

    @property
    def complete(self) -> bool:
        return self.filled is not None and bool(self.filled.all())

    def lookup(self, indices: Tensor) -> Tensor | None:
        """The cached outputs of ``indices``, or None if any of them is not cached yet."""
        if self.filled is None:
            return None
        rows = indices.cpu().numpy()
        if not self.filled[rows].all():
            return None
        return torch.from_numpy(np.asarray(self.outputs[rows]))

    def store(self, indices: Tensor, outputs: Tensor) -> None:
        """Write the outputs of ``indices`` (one row each)."""
        values = outputs.detach().float().cpu().numpy().reshape(len(indices), -1)
        if self.outputs is None:
            self.create(values.shape[1])
        rows = indices.cpu().numpy()
        self.outputs[rows] = values
        self.filled[rows] = 1
