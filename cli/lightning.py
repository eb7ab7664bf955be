"""``MobileNetsCLI``: LightningCLI over every registered task, the distiller and their data modules."""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import yaml
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from mobilenets.configs import config_path
from mobilenets.core.checkpoint import read_checkpoint, unpickled_globals, weights_only_for
from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.core.io import read_text
from mobilenets.distill import DistillationTask  # noqa: F401 (registers `class_path: DistillationTask`)
from mobilenets.tasks.data.loading import MOVED_DATA_SETTINGS
from mobilenets.tasks.data.resume import AtomicCheckpointIO, ExactResume, ValidateFinalSteps, find_last_checkpoint
from mobilenets.tasks.predictions import PredictionWriter
from mobilenets.tasks.registry import import_tasks

__all__ = ["MobileNetsCLI", "resolve_config_args"]

log = logging.getLogger(__name__)

# Short class names in configs (``class_path: ClassificationTask``) resolve among the imported subclasses.
import_tasks()


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """``--config NAME`` / ``--config=NAME`` made a path: a file, or a packaged config (``demo/dogs.yaml``); an
    experiment file (``runs`` compared by ``mobilenets experiment``) is refused, naming that command."""
    resolved, following = [], False
    for arg in args:
        if following:
            arg, following = _lightning_config(arg), False
        elif arg in ("--config", "-c"):
            following = True
        elif arg.startswith("--config="):
            arg = "--config=" + _lightning_config(arg.split("=", 1)[1])
        resolved.append(arg)
    return resolved


def _lightning_config(name: str) -> str:
    path = config_path(name)
    try:
        spec = yaml.safe_load(read_text(path))
    except yaml.YAMLError:
        return str(path)  # jsonargparse names the syntax error
    if isinstance(spec, dict) and "runs" in spec and not {"model", "data", "trainer"} & set(spec):
        raise SettingError(f"{name} is an experiment (runs compared under one budget), not a Lightning config: run "
                           f"mobilenets experiment {name}")
    return str(path)


#: settings that moved, which configs written before set where they were: where they are now
_MOVED_KEYS = dict.fromkeys(
    MOVED_DATA_SETTINGS,
    "; distillation's data settings are a SemiSupervisedDataModule's: wrap the data module in one (data.class_path: "
    "SemiSupervisedDataModule, with this setting and datamodule: the data module in its init_args)")


def _close_keys(key: str, valid: Sequence[str]) -> str:
    """"; did you mean alpha?": the valid keys beside ``key`` closest to its last part, or where its group is
    itself misspelt, the closest full keys (or, for a setting that moved, where it is now)."""
    parent, _, leaf = key.rpartition(".")
    if leaf in _MOVED_KEYS:
        return _MOVED_KEYS[leaf]
    siblings = [name.rpartition(".")[2] for name in valid if name.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6) if siblings else []
    close = close or difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _init_arg_keys(class_path: str) -> list[str]:
    """Every argument ``class_path`` takes, dataclass fields as dotted keys (``backbone.alpha``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(resolve_class(class_path, None), fail_untyped=False)
    return list(parser.get_defaults().keys())


#: jsonargparse's ways of saying that there is no option of that name (its groups joined make the key)
_UNKNOWN_KEY = [re.compile(r"unrecognized arguments: --([^\s=]+)"),
                re.compile(r"Group '([^']+)' does not accept option '([^']+)'"),
                re.compile(r"Subcommand '[^']+' does not accept option '([^']+)'"),
                re.compile(r"Option '([^']+)' is not accepted"), re.compile(r"Key '([^']+)' is not expected")]


def _unknown_key(message: str) -> str | None:
    for pattern in _UNKNOWN_KEY:
        found = pattern.search(message)
        if found:
            return ".".join(found.groups())
    return None


def misspelt_key_message(message: str, parser: Any) -> str | None:
    """One line for jsonargparse's error ``message``: an unknown key named in full with the closest valid ones, or
    a bad value named by its key; None for other errors. ``parser``: the subcommand's parser (whose options are
    the candidates)."""
    # a class inside a class (a distiller's student, a multi-task head): each level's key and class, outermost first
    classes = list(re.finditer(r'Parser key "([^"]+)":.*?Problem with given class_path \'([^\']+)\':', message,
                               re.DOTALL))
    if classes:
        group = ".init_args.".join(found[1] for found in classes)
        class_path, detail = classes[-1][2], message[classes[-1].end():]
        key = _unknown_key(detail)
        if key:
            group = _with_entry_name(group, key, message)
            return (f"{group}.init_args.{key}: {class_path.rpartition('.')[2]} takes no such argument"
                    f"{_close_keys(key, _init_arg_keys(class_path))}")
        refused = re.search(r'Parser key "([^"]+)":(?:(?!Parser key).)*?- Not of type \w+: ([^\n]+)', detail, re.DOTALL)
        if refused:  # a mapping's value its type's parser refused (a multi-task head's teacher)
            return f"{group}.init_args.{refused[1]}{_entry_refused(refused[2], detail)}: {refused[2]}"
        bad_value = re.search(r'Parser key "([^"]+)":\s*(.+)', detail)
        return f"{group}.init_args.{bad_value[1]}: {bad_value[2]}" if bad_value else None
    key = _unknown_key(message)
    return f"{key}: no such option{_close_keys(key, list(parser.get_defaults().keys()))}" if key else None


def _entry_refused(reason: str, detail: str) -> str:
    """``.name`` of the mapping entry whose value holds the setting ``reason`` quotes (jsonargparse gives the whole
    mapping only), or nothing where that cannot be told."""
    quoted, given = re.search(r"'([^']+)'", reason), re.search(r"Given value: (\{.*\})", detail)
    if not (quoted and given):
        return ""
    try:
        mapping = ast.literal_eval(given[1])
    except (ValueError, SyntaxError):
        return ""
    names = [name for name, value in mapping.items() if isinstance(value, dict) and quoted[1] in value]
    return f".{names[0]}" if len(names) == 1 else ""


def _with_entry_name(group: str, key: str, message: str) -> str:
    """``group`` with the name of the mapping entry the class sits under (``heads.face_embedding``), which
    jsonargparse's message gives only in the value: the command line's nested key, or the config's mapping."""
    given = re.search(r"NestedArg\(key='([^']+)\.init_args\.[^']+'", message)
    if given:
        return f"{group.partition('.')[0]}.init_args.{given[1]}"
    entry = re.search(r"'([^']+)': \{(?:'class_path': '[^']+', )?'init_args': \{[^{}]*'" + re.escape(key) + "':",
                      message)
    if not entry or group.endswith(f".{entry[1]}"):  # a class under a key of its own, not a mapping's entry
        return group
    return f"{group}.{entry[1]}"


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

    def init_parser(self, **kwargs: Any) -> pl.cli.LightningArgumentParser:
        """Lightning's parser (the main one and each subcommand's), raising its errors to ``parse_arguments``
        instead of printing the whole usage first."""
        parser = super().init_parser(exit_on_error=False, **kwargs)
        self._parsers = [*getattr(self, "_parsers", []), parser]  # the main parser, then the subcommands' in order
        return parser

    def parse_arguments(self, parser: pl.cli.LightningArgumentParser, args: Any) -> None:
        """Lightning's parsing, its errors in one line (a misspelt key named in full, with the closest valid keys);
        then ``--ckpt_path``'s checks, before Lightning reads the checkpoint's hyperparameters with
        ``weights_only=True``: an untrusted file gets the one-line refusal, a trusted one (``--trust-checkpoint``)
        has the globals it names allowed."""
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as error:
            raise SystemExit(f"mobilenets: {self._parse_error(error, args)}") from None
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return
        recorded = read_checkpoint(path).get("hyper_parameters", {}).get("_class_path")  # untrusted: refused here
        model = self.config[subcommand].get("model")
        configured = model.get("class_path") if model else None
        if recorded and configured and resolve_class(recorded, None) is not resolve_class(configured, None):
            recorded, configured = recorded.rpartition(".")[2], configured.rpartition(".")[2]
            raise SettingError(f"{path} is a {recorded} checkpoint, but the config's model is a {configured}: give "
                               f"--ckpt_path a {configured} checkpoint, or a {recorded} config with this checkpoint")
        if not weights_only_for(path):  # trusted (--trust-checkpoint): Lightning's weights-only read may build them
            torch.serialization.add_safe_globals(unpickled_globals(path))

    def before_instantiate_classes(self) -> None:
        """With ``--ckpt_path`` a file, the weights come from the checkpoint: the files the model first started from
        (``init_from``, ``backbone.pretrained``, which Lightning takes from the checkpoint's hyperparameters) are not
        read again, so a run still tests, predicts and resumes after they are moved or deleted."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        path, model = config.get("ckpt_path"), config.get("model")
        init_args = model.get("init_args") if model else None
        if not path or not Path(path).is_file() or init_args is None:
            return
        if init_args.get("init_from"):
            init_args["init_from"] = None
        backbone = init_args.get("backbone")
        if backbone is not None and getattr(backbone, "get", None) and backbone.get("pretrained"):
            backbone["pretrained"] = None

    def _parse_error(self, error: argparse.ArgumentError, args: Any) -> str:
        """The error of the subcommand's own parser (the main parser may report only "unrecognized arguments:
        fit"), as ``misspelt_key_message`` words it, or as jsonargparse does."""
        args = list(sys.argv[1:] if args is None else args)
        subcommands = list(self.subcommands()) if len(self._parsers) > 1 else []  # run=False: no subcommands
        if args and args[0] in subcommands:
            subcommand_parser = self._parsers[1 + subcommands.index(args[0])]
            try:
                subcommand_parser.parse_args(args[1:])
            except argparse.ArgumentError as inner:
                return f"{args[0]}: {misspelt_key_message(str(inner), subcommand_parser) or inner}"
        return misspelt_key_message(str(error), self._parsers[0]) or str(error)

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
        """Lightning's trainer, writing checkpoints atomically unless a plugin already chose how to write them, and
        validating a fit's last steps where ``max_steps`` ends it inside an epoch. Where the config chooses no
        logger, Lightning's default TensorBoard logger gets the CSV logger beside it (``metrics.csv`` in the same
        ``version_N`` folder, for scripts) and the learning rate is logged at every step."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        callbacks = [ValidateFinalSteps()]
        if [type(logger) for logger in trainer.loggers] == [TensorBoardLogger] and self._default_logger():
            # TensorBoard's documented switch to its TensorFlow stub (its notf marker): writing events needs no
            # TensorFlow, whose import (seconds) it would otherwise pay in every process where TensorFlow is installed
            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
            trainer.loggers = [*trainer.loggers, CSVLogger(trainer.loggers[0].log_dir, name="", version="")]
            if not any(isinstance(callback, LearningRateMonitor) for callback in trainer.callbacks):
                callbacks.append(LearningRateMonitor(logging_interval="step"))
        trainer.callbacks.extend(callbacks)
        return trainer

    def _default_logger(self) -> bool:
        """Whether the trainer's logger is Lightning's default (the config sets none, or ``logger: true``)."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        return config.get("trainer", {}).get("logger") in (None, True)

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
