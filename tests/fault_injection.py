"""Callbacks that break a run on purpose, for the resume and fault tests (used by subprocesses via PYTHONPATH)."""

import os
import signal

from pytorch_lightning.callbacks import Callback


class SignalAtStep(Callback):
    """Send this process ``signal_name`` right after optimizer step ``step``: SIGKILL is a crash that no code sees
    (nothing saved), SIGTERM a scheduler's preemption."""

    def __init__(self, step: int, signal_name: str = "SIGKILL") -> None:
        self.step, self.signal = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)
