"""Resuming a fit exactly, and leaving something to resume from when the job is stopped.

Lightning restores weights, optimizer, schedule and loop counters from a checkpoint but not the random number
generators, so a resumed run shuffles and augments differently from an uninterrupted one. ``ExactResume``
(added to every ``mobilenets fit``) closes that gap and handles SIGTERM:

- ``last.ckpt`` is written after every epoch (its validation included), beside the run's ``ModelCheckpoint``
  files; ``--ckpt_path last`` finds the newest one under the trainer's root directory;
- every checkpoint carries each rank's torch, numpy and Python RNG states, and a resumed fit puts them back
  before its first training batch is drawn: with the checkpoint taken at an epoch's end, the rest of the run
  repeats the uninterrupted one exactly (data order, augmentation, dropout). Loader workers draw their seeds
  from these states when an epoch starts, so this holds with workers too, unless they are persistent across
  epochs (``persistent_workers: false`` on the data module keeps resumes exact with ``num_workers > 0``);
- on SIGTERM (a scheduler's preemption; Lightning stops every rank at the next batch) it saves ``last.ckpt``
  where the run's ``ModelCheckpoint`` saves, so ``--ckpt_path last`` continues from there. A mid-epoch checkpoint
  restarts that epoch's data from its beginning, so such a resume is not bit-exact.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mobilenets.core.distributed import gather_objects
from mobilenets.core.io import replacing

__all__ = ["AtomicCheckpointIO", "ExactResume", "ValidateFinalSteps", "find_last_checkpoint"]

log = logging.getLogger(__name__)


def _random_states() -> dict[str, Any]:
    """The generators' states in types ``torch.load(weights_only=True)`` accepts (Lightning resumes that way)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(Callback):
    """Per-rank RNG states in every checkpoint, restored when a fit resumes; ``last.ckpt`` written after every
    epoch and on SIGTERM."""

    def __init__(self) -> None:
        self._rank, self._world_size = 0, 1

    def state_dict(self) -> dict[str, Any]:
        return {"random_states": gather_objects(_random_states())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put this rank's generators back as the checkpoint found them, at once: Lightning restores callbacks
        before the optimizer's schedule sizes itself by building, and so first iterating, the training loader
        (which draws its shuffling and worker seeds then). Lightning already keeps the sanity check from
        drawing on them."""
        states = state_dict.get("random_states") or []
        if len(states) != self._world_size:
            log.warning("the checkpoint holds random states of %d processes, this run has %d: resuming with fresh "
                        "random states (not bit-exact)", len(states), self._world_size)
            return
        _set_random_states(states[self._rank])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Note this process's rank (checkpoints are restored after ``setup``), and take over ``last.ckpt``."""
        self._rank, self._world_size = trainer.global_rank, trainer.world_size
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                log.warning("ModelCheckpoint(save_last=%r) turned off: mobilenets writes last.ckpt after every epoch "
                            "itself (since Lightning 2.6, save_last refreshes it only when a top-k checkpoint is "
                            "saved, so it would hold the best epoch, not the last)", callback.save_last)
                callback.save_last = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After the epoch's validation: the state the next epoch starts from."""
        if trainer.checkpoint_callback is not None and not trainer.sanity_checking:
            trainer.save_checkpoint(self.last_path(trainer), weights_only=False)  # whole: optimizer, loops, RNG

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = self.last_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        log.warning("SIGTERM: saved %s at epoch %d, step %d; continue with --ckpt_path last", path,
                    trainer.current_epoch, trainer.global_step)

    @staticmethod
    def last_path(trainer: pl.Trainer) -> Path:
        """``last.ckpt`` in the folder of the run's ``ModelCheckpoint`` (or ``<root>/checkpoints``)."""
        checkpoint = trainer.checkpoint_callback
        folder = checkpoint.dirpath if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath else \
            Path(trainer.default_root_dir) / "checkpoints"
        return Path(folder) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"


class ValidateFinalSteps(Callback):
    """A fit that reaches ``max_steps`` inside an epoch validates those last steps before it ends (Lightning
    otherwise ends the partial epoch unvalidated, so the best checkpoint could miss its last steps). Added to
    every ``mobilenets fit``."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning validates after the batch where it is asked to stop (as early stopping asks).
        if 0 <= trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to ``<name>.partial`` beside their final name, synced, then renamed: a crash or a full
    disk mid-write never leaves a file that looks complete, and the previous ``last.ckpt`` stays intact.

    Lightning's own save goes through a temporary file in the system temp folder and a move, which becomes a
    plain copy into place when that folder is on another disk. Remote paths (``s3://``...) keep Lightning's.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with replacing(path) as partial, partial.open("wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())


def find_last_checkpoint(root: str | Path) -> Path | None:
    """The newest ``last*.ckpt`` under a run's root directory, whatever logger version wrote it."""
    found = sorted(Path(root).rglob("last*.ckpt"), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None
