"""The ``mobilenets`` command: Lightning's fit/validate/test/predict plus the suite's own subcommands.

Lightning's subcommands go to ``MobileNetsCLI`` (``--config`` a path or a packaged config's name, ``--print_config``,
overrides such as ``--trainer.max_epochs 3``, ``class_path``/``init_args`` for model and data). The suite's
subcommands (``profile``, ``synth``, ``export``, ``bench`` ...) are plain argparse, listed beside Lightning's in
``mobilenets --help``. Nothing heavy is imported until a subcommand runs: each handler imports what it needs, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mobilenets.core.checkpoint import TRUST_ENV, UntrustedFileError
from mobilenets.core.errors import BadRecordError, SettingError
from mobilenets.core.timing import SAVE_HELP
from mobilenets.tasks.registry import TASKS

if TYPE_CHECKING:
    from mobilenets.core.tables import Table

__all__ = ["LIGHTNING_SUBCOMMANDS", "build_parser", "main"]

log = logging.getLogger(__name__)

TRUST_FLAG = "--trust-checkpoint"

LIGHTNING_SUBCOMMANDS = {
    "fit": "train a task from a YAML config (Lightning)",
    "validate": "evaluate on the validation set (Lightning)",
    "test": "evaluate on the test set (Lightning)",
    "predict": "run inference and write predictions (Lightning)",
}


def parse_key_values(spec: str) -> dict:
    """``"alpha=0.75,shallow=true,name=x"`` -> {"alpha": 0.75, "shallow": True, "name": "x"}."""
    parsed: dict = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, found, value = item.partition("=")
        if not found:
            raise SystemExit(f"expected key=value, got {item!r}")
        if value.lower() in ("true", "false"):
            parsed[key] = value.lower() == "true"
            continue
        for convert in (int, float, str):
            try:
                parsed[key] = convert(value)
                break
            except ValueError:
                continue
    return parsed


def run_profile(args: argparse.Namespace) -> int:
    if args.config is not None:
        from mobilenets.cli.tables import config_table

        tables = [config_table(args.config)]
    elif args.model is not None:
        from mobilenets.backbone import MobileNetV1, check_resolution
        from mobilenets.backbone.profile import layer_table

        kwargs = parse_key_values(args.model)
        resolution = check_resolution(kwargs.pop("resolution", 224))
        try:
            model = MobileNetV1(**kwargs)
        except TypeError as error:
            raise SystemExit(f"--model: {error}") from None
        tables = [layer_table(model, resolution)]
    else:
        from mobilenets.cli.tables import paper_tables

        tables = paper_tables()
        unknown = set(args.table or []) - {table.key for table in tables}
        if unknown:
            raise SystemExit(f"--table: unknown {sorted(unknown)}; choose from {[table.key for table in tables]}")
        tables = [table for table in tables if not args.table or table.key in args.table]
    return _report(tables, args)


def run_bench(args: argparse.Namespace) -> int:
    return _report(args.measure(args), args)


def _report(tables: Sequence[Table], args: argparse.Namespace) -> int:
    """Print a measuring command's tables, and with ``--save FILE`` add them to that results file with their
    provenance (the command as typed, the commit, CPU, cores, torch and date)."""
    from mobilenets.core.tables import render

    if not tables:  # nothing measured here (a GPU check without a GPU), having said why
        return 0
    print(render(tables, args.format))
    return _save(tables, args)


def _save(tables: Sequence[Table], args: argparse.Namespace) -> int:
    if args.save:
        from mobilenets.core.results import save_tables

        path = save_tables(tables, args.save, args.invocation)
        print(f"saved {', '.join(table.key for table in tables)} to {path}", file=sys.stderr)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from mobilenets.tasks.registry import synthetic_writer

    options = parse_key_values(",".join(args.option or []))
    root = synthetic_writer(args.task)(args.root, seed=args.seed, **options)
    print(f"wrote synthetic {args.task} data to {root}")
    return 0


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("synth", help="write a task's synthetic dataset in the real on-disk layout")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("root", help="folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", help="writer argument as key=value, e.g. num_classes=8")
    parser.set_defaults(handler=run_synth)


def run_demo_command(args: argparse.Namespace) -> int:
    from mobilenets.cli.demo import run_demo

    run_demo(args.output, quick=args.quick, fresh=args.fresh, seeds=args.seeds, save=args.save,
             command=args.invocation)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the paper's Section 4 in miniature: train every task on synthetic data and write a report")
    parser.add_argument("--output", default="demo_report", help="report folder (also holds the data and runs)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (about 2 minutes on 2 cores)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of reusing finished stages")
    parser.add_argument("--seeds", type=int, default=1,
                        help="seeds for the sweep and distillation experiments (mean ± std from 2 up; default 1)")
    parser.add_argument("--save", metavar="FILE", help=SAVE_HELP)
    parser.set_defaults(handler=run_demo_command)


def run_experiment_command(args: argparse.Namespace) -> int:
    from mobilenets.cli.experiment import Experiment, experiment_table, run_experiment

    experiment = Experiment.load(args.name)
    if args.runs:
        experiment = experiment.only(args.runs.split(","))
    output = Path(args.output or Path("experiments") / experiment.name)
    records = run_experiment(experiment, output, seeds=args.seeds, steps=args.steps, data_root=args.data_root,
                             quick=args.quick, fresh=args.fresh)
    table = experiment_table(experiment, records)
    print(table.to_markdown())
    print(f"wrote {output / 'table.md'}, {output / 'runs.json'}")
    return _save([table], args)


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    from mobilenets.cli.experiment import QUICK_STEPS
    from mobilenets.configs import CONFIG_DIR

    names = ", ".join(sorted(path.stem for path in (CONFIG_DIR / "experiments").glob("*.yaml")))
    parser = subparsers.add_parser(
        "experiment", help="runs compared under one step budget over several seeds: a mean ± std table and JSON")
    parser.add_argument("name", help=f"a packaged experiment ({names}) or an experiment YAML file")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 for every run (default 1)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run instead of the experiment's own")
    parser.add_argument("--runs", help="comma-separated run names to run alone (their teachers come along)")
    parser.add_argument("--data-root", help="every run's data root instead of its config's")
    parser.add_argument("--output", help="results folder (default experiments/NAME); finished runs are reused")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per run: shows the plumbing")
    parser.add_argument("--fresh", action="store_true", help="start over instead of reusing finished runs")
    parser.add_argument("--save", metavar="FILE", help=SAVE_HELP)
    parser.set_defaults(handler=run_experiment_command)


def run_weights(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check_conversions(args)
    if args.action == "export":
        return _export_weights(args)
    from mobilenets.backbone.weights import load_backbone, save_backbone

    try:
        model = load_backbone(args.source, keep_background=args.keep_background)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"mobilenets weights convert: {error}") from None
    path = save_backbone(model, args.output)
    config = model.config
    print(f"{path}: MobileNetV1 alpha {config['alpha']}, {config['num_classes']} classes, padding "
          f"{config['padding']}; use it as backbone.pretrained (with backbone.padding: {config['padding']}) or "
          f"mobilenets.backbone.load_backbone")
    return 0


def _export_weights(args: argparse.Namespace) -> int:
    from mobilenets.deploy.share import export_timm, export_transformers
    from mobilenets.distill import trained_task
    from mobilenets.tasks.data.loading import load_task

    task = trained_task(load_task(args.checkpoint))
    if args.to == "timm":
        kwargs = export_timm(task, args.output)
        print(f"{args.output}: timm.create_model({kwargs.pop('model_name')!r}, **{kwargs!r})")
    else:
        folder = export_transformers(task, args.output)
        print(f"{folder}: MobileNetV1ForImageClassification.from_pretrained({str(folder)!r}) with "
              f"AutoImageProcessor.from_pretrained({str(folder)!r})")
    return 0


def _check_conversions(args: argparse.Namespace) -> int:
    from mobilenets.core.tables import Table, render

    try:
        from mobilenets.backbone.reference import conversion_checks
        pairs = tuple((float(a), int(r)) for a, r in (pair.split(",") for pair in args.pairs))
        rows = conversion_checks(pairs=pairs, formats=tuple(args.formats))
    except ImportError as error:
        raise SystemExit(f"mobilenets weights check builds the reference models with keras, transformers and "
                         f"tensorflow: pip install -e '.[dev]' ({error})") from None
    table = Table(key="weights_check", title="Converted weights against the reference implementation (float64)",
                  columns=["format", "alpha", "resolution", "file", "max |logit difference|"],
                  rows=[[r["format"], r["alpha"], r["resolution"], r["file"], f"{r['max_abs_diff']:.1e}"] for r in rows])
    print(render([table], "markdown"))
    return 0 if all(r["max_abs_diff"] < 1e-4 for r in rows) else 1


def _add_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="convert published MobileNet v1 weights to the suite's format, "
                                   "or a trained model to timm's or transformers'")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = actions.add_parser(
        "convert", help="a TF-slim checkpoint, Keras .h5, Hugging Face or timm file -> OUT (.safetensors or .pth)")
    convert.add_argument("source", help="the weights file (for a TF checkpoint, its prefix or .index file)")
    convert.add_argument("output", help="the file to write: .safetensors (config in its metadata) or .pth")
    convert.add_argument("--keep-background", action="store_true",
                         help="keep class 0 (background) of a 1001-way TensorFlow classifier")
    convert.set_defaults(handler=run_weights)
    check = actions.add_parser(
        "check", help="build each reference (Keras, TF-slim via TensorFlow, Hugging Face) with random weights, save "
        "it in its published layout, convert, and print the largest logit difference (needs the dev extra)")
    check.add_argument("--pairs", nargs="+", default=["1.0,224", "0.75,192", "0.5,160", "0.25,128"],
                       help="alpha,resolution pairs")
    check.add_argument("--formats", nargs="+", default=["keras", "tf-slim", "hugging-face"],
                       choices=["keras", "tf-slim", "hugging-face"])
    check.set_defaults(handler=run_weights)
    export = actions.add_parser(
        "export", help="a checkpoint (a backbone with one linear head: classification, face attributes, "
        "geolocation) as a timm mobilenetv1_* file or a transformers MobileNetV1ForImageClassification folder")
    export.add_argument("checkpoint", help="a task checkpoint (a distillation checkpoint gives its student)")
    export.add_argument("--to", required=True, choices=["timm", "transformers"])
    export.add_argument("output", help="timm: the file (.safetensors or .pth); transformers: the folder")
    export.set_defaults(handler=run_weights)


def run_export(args: argparse.Namespace) -> int:
    from mobilenets.deploy.checkpoint import export_checkpoint, report_markdown
    from mobilenets.distill import trained_task
    from mobilenets.tasks.data.loading import load_task

    overrides = {"root": args.data_root} if args.data_root else {}
    output = args.output or str(Path(args.checkpoint).with_suffix("")) + "_export"
    task = trained_task(load_task(args.checkpoint))
    report = export_checkpoint(args.checkpoint, task, output, int8=not args.no_int8, pt2=args.pt2,
                               dynamic_size=args.dynamic_size, evaluate_data=not args.no_data,
                               calibration=args.calibration_batches, threads=args.threads, data_overrides=overrides,
                               formats=args.format)
    print(report_markdown(report))
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="a checkpoint to ONNX, LiteRT, ExecuTorch or OpenVINO (fp32 and int8) with the task's "
                       "post-processing, checked and scored")
    parser.add_argument("checkpoint", help="a task checkpoint (.ckpt); a distillation checkpoint exports its student")
    parser.add_argument("--output", help="folder for model.onnx, model.int8.onnx, the other formats' files, "
                        "export_report.json (default: <checkpoint>_export)")
    parser.add_argument("--format", nargs="+", default=["onnx", "openvino"],
                        choices=["onnx", "tflite", "executorch", "openvino"],
                        help="formats to write (several allowed; model.onnx is always written; default: onnx "
                             "openvino, whose int8 is the fastest on Intel CPUs): tflite (LiteRT, extra [tflite]), "
                             "executorch (XNNPACK, extra [executorch])")
    parser.add_argument("--data-root", help="where the checkpoint's data lives now (default: the recorded root)")
    parser.add_argument("--no-data", action="store_true",
                        help="do not read the data: no parity check or metrics, random calibration images")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 models")
    parser.add_argument("--calibration-batches", type=int, default=8, help="training batches that calibrate int8")
    parser.add_argument("--dynamic-size", action="store_true", help="any input height and width (not detection)")
    parser.add_argument("--pt2", action="store_true", help="also write the torch.export program (model.pt2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.set_defaults(handler=run_export)


#: the environment variable that hands ``mobilenets serve``'s settings to uvicorn's worker processes
SERVE_SETTINGS_ENV = "MOBILENETS_SERVE_SETTINGS"


def serving_app() -> Any:
    """The application each uvicorn worker process of ``mobilenets serve`` builds, from the settings in the
    environment; a checkpoint's task is loaded here (a distiller's student)."""
    import json
    from pathlib import Path

    from mobilenets.deploy.serve import ServeSettings, create_app

    settings = ServeSettings(**json.loads(os.environ[SERVE_SETTINGS_ENV]))
    task = None
    if Path(settings.model).suffix == ".ckpt":
        from mobilenets.distill import trained_task
        from mobilenets.tasks.data.loading import load_task

        task = trained_task(load_task(settings.model))
    return create_app(settings, task)


def run_serve(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    try:
        import uvicorn

        from mobilenets.deploy.serve import ServeSettings
    except ImportError as error:
        raise SystemExit(f"mobilenets serve needs FastAPI and uvicorn: pip install 'mobilenet-suite[serve]' ({error})")
    settings = ServeSettings(args.model, max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000,
                             max_body=args.max_body_mb * 2**20, threads=args.threads,
                             options=parse_key_values(",".join(args.option or [])))
    os.environ[SERVE_SETTINGS_ENV] = json.dumps(asdict(settings))
    serving_app()  # a bad model or option: its one-line error now, not in every worker
    uvicorn.run("mobilenets.cli.main:serving_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info")
    return 0


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="a checkpoint or exported model behind an HTTP JSON API (POST /predict, /info, /health) with "
                      "dynamic batching, and a page at / to try it")
    parser.add_argument("model", help="a task checkpoint (.ckpt), model.onnx or an OpenVINO model.xml")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="server processes, each with the model")
    parser.add_argument("--max-batch", type=int, default=8, help="the most requests one forward pass takes (1: off)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    parser.add_argument("--max-body-mb", type=int, default=10, help="the largest request body")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each worker's model")
    parser.add_argument("--option", action="append", help="the task's serving options, key=value (face "
                        "embedding: gallery=G.npz, top_k=5)")
    parser.set_defaults(handler=run_serve)


def run_shards(args: argparse.Namespace, overrides: Sequence[str] = ()) -> int:
    from mobilenets.cli.lightning import MobileNetsCLI
    from mobilenets.tasks.data.shards import write_shards

    datamodule = MobileNetsCLI(["--config", args.config, *overrides], run=False).datamodule
    counts = write_shards(datamodule, args.output, tuple(args.splits), args.maxcount)
    for split, count in counts.items():
        print(f"{split}: {count} samples in {args.output}/{split}-*.tar")
    return 0


def _add_shards(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shards", help="write a config's dataset as WebDataset tar shards (train from them with data.shards)")
    parser.add_argument("--config", required=True, help="a task config (its data section is used)")
    parser.add_argument("--output", required=True, help="folder for <split>-NNNNNN.tar and <split>.json")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.set_defaults(handler=run_shards, passes_overrides=True)


def _add_profile(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="MACs and parameters counted the paper's way, beside the paper's tables"
    )
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--save", metavar="FILE", help=SAVE_HELP)
    parser.add_argument("--table", action="append", help="print only this table (repeatable)")
    parser.add_argument(
        "--model", help="profile one model layer by layer, e.g. alpha=0.75,resolution=192 (any MobileNetV1 argument)"
    )
    parser.add_argument("--config", help="profile the model of a task config (packaged or a file); a multi-task "
                        "model beside its heads as separate models")
    parser.set_defaults(handler=run_profile)


def _add_bench(subparsers: argparse._SubParsersAction, rooms: Sequence[ModuleType]) -> None:
    parser = subparsers.add_parser("bench", help="speed against the reference implementation, in one process; "
                                   "each package adds the targets it measures")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for room in rooms:
        if hasattr(room, "add_bench_targets"):
            room.add_bench_targets(targets)
    parser.set_defaults(handler=run_bench)


#: The suite's own subcommands, before and after those the packages add.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_experiment, _add_profile, _add_synth]
LATER_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_export, _add_serve, _add_shards, _add_weights]

#: The ``commands`` rooms of the layers below the command line that are not task packages (a task package's comes
#: from the task registry): each may have ``add_commands(subparsers)`` and ``add_bench_targets(targets)``.
LAYER_COMMANDS = ("mobilenets.backbone.commands", "mobilenets.distill.commands", "mobilenets.deploy.commands")


def command_rooms() -> list[ModuleType]:
    """Every package's ``commands`` module: the layers', then the task packages' and the shared ones' (registry)."""
    from mobilenets.tasks.registry import command_modules

    return [importlib.import_module(name) for name in (*LAYER_COMMANDS, *command_modules())]


def build_parser() -> argparse.ArgumentParser:
    """The parser for the suite's subcommands and those the packages add; Lightning's are listed for help and
    handed to LightningCLI."""
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNets (Howard et al. 2017) and its applications. "
        "Lightning subcommands take --config FILE.yaml and --help of their own.",
    )
    parser.add_argument(TRUST_FLAG, action="store_true",
                        help="unpickle checkpoint and weight files even when that runs code they carry (only for "
                        "files you trust); without it such files are refused")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in LIGHTNING_SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    rooms = command_rooms()
    for add in SUBCOMMANDS:
        add(subparsers)
    for room in rooms:
        if hasattr(room, "add_commands"):
            room.add_commands(subparsers)
    for add in LATER_SUBCOMMANDS:
        add(subparsers)
    _add_bench(subparsers, rooms)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (as logging's own last-resort handler does),
    not the stream of the moment it was made, which a test harness or a notebook may have closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it once; the property above always answers
        pass


def show_suite_messages() -> None:
    """Print the suite's own log messages (synthetic data written, partitions built, bad records skipped) as
    Lightning prints its own: INFO and up, to stderr, once per process."""
    logger = logging.getLogger("mobilenets")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[mobilenets] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mobilenets`` and ``python -m mobilenets.cli``. A file refused as untrusted, a dataset record
    that cannot be used (``BadRecordError``, whose message names the file, the record and the fix), a path that
    does not exist and a setting that does not fit the data (``SettingError``) end the command with their one
    line, not a traceback through Lightning."""
    try:
        return _dispatch(argv)
    except (UntrustedFileError, BadRecordError, SettingError, FileNotFoundError, NotADirectoryError,
            argparse.ArgumentError) as error:
        raise SystemExit(f"mobilenets: {_own_message(error)}") from None


def _without_save(args_list: Sequence[str]) -> list[str]:
    """The command line without its ``--save FILE``: where the tables are written is not how they were measured."""
    kept, skip = [], False
    for arg in args_list:
        if skip:
            skip = False
        elif arg == "--save":
            skip = True
        elif not arg.startswith("--save="):
            kept.append(arg)
    return kept


def _own_message(error: BaseException) -> str:
    """The error's own message; one raised in a DataLoader worker comes with torch's "Caught ... in DataLoader
    worker process 0" and the worker's traceback before it, whose last line is "module.Class: message"."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    return text.rstrip().splitlines()[-1].partition(": ")[2]


def _dispatch(argv: Sequence[str] | None) -> int:
    show_suite_messages()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if TRUST_FLAG in args_list:  # for every subcommand, Lightning's too, and the processes DDP starts
        os.environ[TRUST_ENV] = "1"
        args_list = [arg for arg in args_list if arg != TRUST_FLAG]
        if argv is None:
            sys.argv[1:] = args_list
        else:
            argv = args_list
    if args_list and args_list[0] in LIGHTNING_SUBCOMMANDS:
        from mobilenets.cli.lightning import MobileNetsCLI

        try:
            MobileNetsCLI(args=argv)  # None: the real command line, which LightningCLI reads itself
        except BadRecordError as error:  # met while training or evaluating: the data module can leave such out
            message = _own_message(error)
            hint = "" if "skip_bad" in message else (
                "; to leave such records out (counted and logged), set data.init_args.skip_bad: true")
            raise BadRecordError(message + hint) from None
        return 0
    args, overrides = build_parser().parse_known_args(args_list)
    args.invocation = shlex.join(["mobilenets", *_without_save(args_list)])
    if getattr(args, "passes_overrides", False):  # config overrides such as --data.init_args.root go through
        return args.handler(args, overrides)
    if overrides:
        build_parser().error(f"unrecognized arguments: {' '.join(overrides)}")
    return args.handler(args)
