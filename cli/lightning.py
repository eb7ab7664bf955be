"""``MobileNetsCLI``: LightningCLI over every registered task, the distiller and their data modules."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.cli import LightningCLI

from mobilenets.configs import config_path
from mobilenets.core.checkpoint import unpickled_globals, weights_only_for
from mobilenets.distill import DistillationTask  # noqa: F401 (registers `class_path: DistillationTask`)
from mobilenets.tasks.predictions import PredictionWriter
from mobilenets.tasks.registry import import_tasks
from mobilenets.tasks.resume import AtomicCheckpointIO, ExactResume, find_last_checkpoint

__all__ = ["MobileNetsCLI", "resolve_config_args"]

log = logging.getLogger(__name__)

# Short class names in configs (``class_path: ClassificationTask``) resolve among the imported subclasses.
import_tasks()


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """``--config NAME`` / ``--config=NAME`` made a path: a file, or a packaged config (``demo/dogs.yaml``)."""
    resolved, following = [], False
    for arg in args:
        if following:
            arg, following = str(config_path(arg)), False
        elif arg == "--config":
            following = True
        elif arg.startswith("--config="):
            arg = "--config=" + str(config_path(arg.split("=", 1)[1]))
        resolved.append(arg)
    return resolved


class MobileNetsCLI(LightningCLI):
    """LightningCLI over every task (``BaseTask`` subclasses and ``DistillationTask``) and data module.

    The optimizer comes from the task's own arguments (so depthwise filters and BN skip weight decay),
    not from LightningCLI's ``--optimizer``, so there is one way to configure it.
    """

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        """``args``: the command line after ``mobilenets`` (``sys.argv`` when None); ``--config`` takes a path or a
        packaged config's name."""
        options: dict[str, Any] = dict(
            model_class=pl.LightningModule, datamodule_class=pl.LightningDataModule, subclass_mode_model=True,
            subclass_mode_data=True, auto_configure_optimizers=False, save_config_kwargs={"overwrite": True}, run=run)
        if args is None:  # the real command line, which LightningCLI reads itself
            sys.argv[1:] = resolve_config_args(sys.argv[1:])
            super().__init__(**options)
            return
        # Given args are the whole command line: hide the process's own (the demo's, a test runner's), which
        # LightningCLI would otherwise warn about.
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            super().__init__(args=resolve_config_args(args), **options)
        finally:
            sys.argv = argv

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path``'s hyperparameters with ``weights_only=True`` before any hook runs: check
        the file first, so an untrusted one gets the one-line refusal, and a trusted one (``--trust-checkpoint``)
        loads with the globals it names allowed."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file() or weights_only_for(path):
            return super()._parse_ckpt_path()
        with torch.serialization.safe_globals(unpickled_globals(path)):
            return super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; an error raised by a constructor (a missing teacher checkpoint, a bad
        alpha) reaches jsonargparse wrapped in "Does not validate against any of the Union subtypes" and its
        traceback: end the command with the constructor's own one-line message instead."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            if "Does not validate against any of the Union subtypes" not in str(error):
                raise
            cause: BaseException = error
            while (cause.__cause__ or cause.__context__) is not None:
                cause = cause.__cause__ or cause.__context__
            if cause is error:
                raise
            raise SystemExit(f"mobilenets: {cause}") from None

    def add_arguments_to_parser(self, parser: pl.cli.LightningArgumentParser) -> None:
        # One resolution for model and data: the model's is the source, the data module follows it.
        parser.link_arguments("model.init_args.resolution", "data.init_args.resolution")
        # predict writes a CSV in every task; --predictions.output_file chooses where.
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        # Every fit resumes exactly from its checkpoints and saves one on SIGTERM.
        parser.add_lightning_class_args(ExactResume, "resume")

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Lightning's trainer, writing checkpoints atomically unless a plugin already chose how to write them."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def before_fit(self) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` under the trainer's root directory, whichever logger
        version wrote it (Lightning looks only in this run's new version folder); none there starts afresh."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            root = self.trainer.default_root_dir
            found = find_last_checkpoint(root)
            config["ckpt_path"] = str(found) if found else None
            if found:
                log.info("resuming from %s", found)
            else:
                log.info("no last.ckpt under %s: starting afresh", root)
        self._load_safely()

    def _load_safely(self) -> None:
        """Lightning loads ``--ckpt_path`` weights-only unless ``--trust-checkpoint``; refuse, with our one-line
        error, a file that would need code run (before Lightning's own traceback)."""
        config = self.config_init[self.subcommand]
        path = config.get("ckpt_path")
        if path and Path(path).is_file() and config.get("weights_only") is None:
            config["weights_only"] = weights_only_for(path)

    before_validate = before_test = before_predict = _load_safely
