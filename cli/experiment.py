"""``mobilenets experiment``: a named comparison of configs under one budget, run over several seeds.

An experiment is a YAML file (packaged ones live in ``configs/experiments/``) that lists runs, each a config plus
overrides. Every run trains for the experiment's ``steps`` optimizer steps (``trainer.max_steps``, the cosine
schedule spread over them), keeps its config's augmentation and data, and is tested on its best validation
checkpoint. A run may take another run's checkpoint as its distillation teacher (``teacher: NAME``, the same
seed's); a run marked ``once`` is trained with the first seed only and reused by the others (a fixed teacher);
a run with ``steps`` of its own (a teacher, which is not one of the compared) keeps them. The results are a
table of mean ± sample std per run, a JSON of every run, and a plot of each run's metric against its MACs with
error bars. Finished runs are kept (``runs/<run>/seed_<k>.json``), so a re-run does only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from mobilenets.configs import config_path
from mobilenets.core.errors import SettingError
from mobilenets.core.io import read_text, write_text
from mobilenets.core.tables import Table

__all__ = ["Experiment", "ExperimentRun", "Trained", "experiment_table", "fit_and_test", "mean_std",
           "plot_against_macs", "run_experiment", "summarize"]

log = logging.getLogger(__name__)

#: --quick: a few training batches, two validation batches, then the whole test split (shows the plumbing)
QUICK = ("--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
         "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1")
QUICK_STEPS = 3


@dataclass
class Trained:
    """What ``fit_and_test`` leaves: the result record, and the trained task and its data for pictures."""

    result: dict[str, Any]
    task: Any
    datamodule: Any


def fit_and_test(config: str | Path, args: Sequence[str], metrics: Sequence[str]) -> Trained:
    """Fit ``config`` with ``args`` (command-line overrides), then test its best validation checkpoint (the
    last weights, saved as ``last.ckpt``, where none was kept). The result names the test ``metrics``, the
    optimizer steps taken, the batch size, the trained model's MACs and parameters (counted the paper's way) and
    the seconds."""
    from mobilenets.backbone.profile import profile_model
    from mobilenets.cli.lightning import MobileNetsCLI
    from mobilenets.core.checkpoint import weights_only_for
    from mobilenets.distill import trained_task

    start = time.perf_counter()
    cli = MobileNetsCLI(args=["--config", str(config_path(config)), *args], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    callback = cli.trainer.checkpoint_callback
    best = callback.best_model_path if callback is not None and callback.best_model_path else None
    if best is None:  # nothing validated (fewer steps than an epoch): the last weights, as a file a teacher can be
        best = str(Path(cli.trainer.default_root_dir) / "last.ckpt")
        cli.trainer.save_checkpoint(best)
    steps = cli.trainer.global_step
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False,
                              weights_only=weights_only_for(best))[0]
    missing = [name for name in metrics if name not in tested]
    if missing:
        raise SettingError(f"{config}: the test logged no {missing[0]}; it logged {sorted(tested)}")
    task = trained_task(cli.model)
    resolution = task.hparams.resolution
    profile = profile_model(task.inference_network(), resolution)
    result = {
        "config": str(config), "metrics": {name: float(tested[name]) for name in metrics}, "steps": steps,
        "batch_size": cli.datamodule.batch_size, "macs_m": profile.macs / 1e6,
        "params_m": profile.params / 1e6, "alpha": task.backbone.alpha, "resolution": resolution,
        "seconds": time.perf_counter() - start,
        "checkpoint": best,
    }
    return Trained(result, task, cli.datamodule)


def _override(key: str, value: Any) -> list[str]:
    """``{key: value}`` of an experiment's ``set`` as command-line arguments (values as JSON, which YAML reads)."""
    return [f"--{key}", value if isinstance(value, str) else json.dumps(value)]


@dataclass(frozen=True)
class ExperimentRun:
    """One row of an experiment: a config (a path or a packaged name) and its overrides (``set``: dotted keys
    as on the command line, e.g. ``data.init_args.label_fraction: 0``)."""

    name: str
    title: str
    config: str
    set: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None  # the run whose best checkpoint this one distills from (the same seed's)
    once: bool = False  # trained with the first seed only; the other seeds reuse it
    steps: int | None = None  # a budget of its own, kept under ``--steps`` (a teacher: not one of the compared)
    #: experiment metric -> the name this run logs it under, where the run reports only some metrics or names them
    #: its own way (a single task beside a multi-task model's ``test/<head>/...``); None: all, as named
    metrics: dict[str, str] | None = None

    def arguments(self) -> list[str]:
        return [arg for key, value in self.set.items() for arg in _override(key, value)]

    def logged_metrics(self, metrics: Sequence[str]) -> dict[str, str]:
        """Each experiment metric this run reports -> the name the run logs it under."""
        return {name: name for name in metrics} if self.metrics is None else dict(self.metrics)


@dataclass(frozen=True)
class Experiment:
    """Runs compared under one budget: ``steps`` optimizer steps each, the test ``metrics`` reported."""

    name: str
    title: str
    metrics: tuple[str, ...]
    steps: int
    runs: tuple[ExperimentRun, ...]
    description: str = ""

    @classmethod
    def load(cls, name: str | Path) -> Experiment:
        """An experiment file, or a packaged experiment by name (``sweep``, ``distill_dogs`` ...)."""
        path = Path(name)
        if not path.is_file():
            path = config_path(f"experiments/{Path(name).stem}.yaml")
        spec = yaml.safe_load(read_text(path))
        if not isinstance(spec, dict):
            raise SettingError(f"{path}: not an experiment (a YAML mapping of title, metrics, steps and runs)")
        try:
            runs = tuple(ExperimentRun(**run) for run in spec.pop("runs"))
            experiment = cls(name=spec.pop("name", path.stem), metrics=tuple(spec.pop("metrics")), runs=runs, **spec)
        except (KeyError, TypeError) as error:
            raise SettingError(f"{path}: not an experiment ({error}); it needs title, metrics, steps and runs "
                               f"(each with name, title and config)") from None
        experiment.check(path)
        return experiment

    def check(self, source: str | Path) -> None:
        names = [run.name for run in self.runs]
        for run in self.runs:
            if names.count(run.name) > 1:
                raise SettingError(f"{source}: two runs are named {run.name!r}")
            if run.teacher is not None and run.teacher not in names[:names.index(run.name)]:
                raise SettingError(f"{source}: run {run.name!r} takes its teacher from {run.teacher!r}, which is "
                                   f"not a run listed before it")
        for steps in (self.steps, *(run.steps for run in self.runs if run.steps is not None)):
            if steps < 1:
                raise SettingError(f"{source}: steps must be at least 1, got {steps}")

    def only(self, names: Sequence[str]) -> Experiment:
        """The same experiment with the named runs alone (and the teachers they need)."""
        keep = set(names)
        keep |= {run.teacher for run in self.runs if run.name in keep and run.teacher}
        unknown = set(names) - {run.name for run in self.runs}
        if unknown:
            raise SettingError(f"experiment {self.name}: no run named {sorted(unknown)[0]!r}; it has "
                               f"{[run.name for run in self.runs]}")
        return Experiment(self.name, self.title, self.metrics, self.steps,
                          tuple(run for run in self.runs if run.name in keep), self.description)

    def overriding(self, settings: dict[str, Any]) -> Experiment:
        """The same experiment with ``settings`` (command-line keys, as a run's ``set``) added to every run."""
        return replace(self, runs=tuple(replace(run, set={**run.set, **settings}) for run in self.runs))


def run_experiment(experiment: Experiment, output: str | Path, seeds: int = 1, steps: int | None = None,
                   data_root: str | Path | None = None, quick: bool = False, fresh: bool = False,
                   progress: str = "experiment") -> list[dict[str, Any]]:
    """Every run of ``experiment`` for seeds ``0 .. seeds-1`` (``steps`` replaces the experiment's budget;
    ``data_root`` every run's data root); returns one record per trained run and writes ``runs.json``,
    ``table.md`` and the plot into ``output``."""
    if seeds < 1:
        raise SettingError(f"seeds must be at least 1, got {seeds}")
    output = Path(output)
    if fresh and output.exists():
        shutil.rmtree(output)
    budget = steps or experiment.steps
    records: list[dict[str, Any]] = []
    for seed in range(seeds):
        checkpoints: dict[str, str] = {}
        for run in experiment.runs:
            if run.once and seed > 0:
                checkpoints[run.name] = next(r["checkpoint"] for r in records if r["run"] == run.name)
                continue
            saved = output / "runs" / run.name / f"seed_{seed}.json"
            args = [*run.arguments(), "--seed_everything", str(seed), "--trainer.max_epochs", "-1",
                    "--trainer.max_steps", str(QUICK_STEPS if quick else run.steps or budget),
                    "--trainer.default_root_dir", str(output / "runs" / run.name / f"seed_{seed}")]
            if data_root is not None:
                args += ["--data.init_args.root", str(data_root)]
            if run.teacher:
                args += ["--model.init_args.teacher.checkpoint", checkpoints[run.teacher]]
            if quick:
                args += [*QUICK, "--trainer.limit_train_batches", str(QUICK_STEPS)]
            digest = hashlib.sha256(read_text(config_path(run.config)).encode()).hexdigest()
            if saved.is_file():
                record, status = json.loads(saved.read_text()), "cached"
                settings = (record.get("config"), record.get("config_sha256"), record.get("arguments"))
                if settings != (run.config, digest, args):
                    raise SettingError(f"{saved}: a finished run of other settings (config or its file's content, "
                                       f"budget or overrides); pass --fresh or another --output")
            else:
                logged = run.logged_metrics(experiment.metrics)
                trained = fit_and_test(run.config, args, list(logged.values()))
                record = {"experiment": experiment.name, "run": run.name, "title": run.title, "seed": seed,
                          **trained.result, "config_sha256": digest, "arguments": args,
                          "teacher": checkpoints.get(run.teacher, "")}
                record["metrics"] = {name: record["metrics"][own] for name, own in logged.items()}
                write_text(saved, json.dumps(record, indent=2))
                status = f"{record['seconds']:.0f} s"
            records.append(record)
            checkpoints[run.name] = record["checkpoint"]
            values = ", ".join(f"{name} {value:.3f}" for name, value in record["metrics"].items())
            if not all(math.isfinite(v) for v in record["metrics"].values()):
                raise RuntimeError(f"{experiment.name} run {run.name} seed {seed}: a metric is not finite: {values}")
            print(f"[{progress}] {run.name:<20} seed {seed} {values} | {record['steps']} steps | {status}", flush=True)
    write_text(output / "runs.json", json.dumps(records, indent=2))
    write_text(output / "table.md", experiment_table(experiment, records).to_markdown())
    _plot(experiment, records, output)
    return records


def summarize(experiment: Experiment, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, in the experiment's order: each metric's mean and sample std over its seeds, the seeds
    counted, and the run's steps, batch size, MACs and parameters."""
    rows = []
    for run in experiment.runs:
        own = [r for r in records if r["run"] == run.name]
        if not own:
            continue
        metrics = {}
        for name in experiment.metrics:
            values = [r["metrics"][name] for r in own if name in r["metrics"]]
            if not values:  # a metric this run does not report
                continue
            metrics[name] = {"mean": statistics.fmean(values),
                             "std": statistics.stdev(values) if len(values) > 1 else None, "values": values}
        shared = ("steps", "batch_size", "macs_m", "params_m", "alpha", "resolution")
        rows.append({"run": run.name, "title": run.title, "seeds": len(own), "metrics": metrics,
                     **{key: own[0][key] for key in shared}})
    return rows


def mean_std(metric: dict[str, Any], percent: bool) -> str:
    scale, unit = (100, "%") if percent else (1, "")
    text = f"{scale * metric['mean']:.1f}{unit}" if percent else f"{metric['mean']:.3f}"
    return text if metric["std"] is None else f"{text} ± {scale * metric['std']:.{1 if percent else 3}f}"


def experiment_table(experiment: Experiment, records: list[dict[str, Any]]) -> Table:
    """The experiment's table (mean ± std over seeds), its budget and description in the notes."""
    rows = summarize(experiment, records)
    seeds = sorted({r["seed"] for r in records})
    batch = {row["batch_size"] for row in rows}
    own = {run.name for run in experiment.runs if run.steps is not None}
    steps = sorted({row["steps"] for row in rows if row["run"] not in own})
    apart = "".join(f"; {row['title']}: {row['steps']} of its own" for row in rows if row["run"] in own)
    spread = (f"mean ± sample std over seeds {', '.join(map(str, seeds))} (a row trained once has no std)"
              if len(seeds) > 1 else f"one seed ({seeds[0]}; `--seeds 3` gives mean ± std)")
    notes = [" ".join(experiment.description.split())] if experiment.description else []
    notes.append(f"Budget: {'/'.join(map(str, steps))} optimizer steps per run{apart} (batch "
                 f"{'/'.join(str(b) for b in sorted(batch))}), each config's augmentation, a cosine schedule over "
                 f"the steps; test metric of the best validation checkpoint (validated at each epoch's end); {spread}.")
    cells = [[row["title"], *(mean_std(row["metrics"][name], percent=True) if name in row["metrics"] else "—"
                              for name in experiment.metrics),
              row["seeds"], row["steps"], f"{row['macs_m']:.1f}", f"{row['params_m']:.3f}"] for row in rows]
    return Table(key=experiment.name, title=experiment.title,
                 columns=["run", *experiment.metrics, "seeds", "steps", "MACs (M)", "params (M)"], rows=cells,
                 notes=notes)


def plot_against_macs(axes: Any, rows: list[dict[str, Any]], metric: str, key: str = "macs_m",
                      label: str = "ours") -> None:
    """Each row's mean ``metric`` (in %) against its MACs or parameters (``key``), with ± std error bars where
    a row has several seeds, labelled by run title."""
    rows = [row for row in rows if metric in row["metrics"]]
    means = [100 * row["metrics"][metric]["mean"] for row in rows]
    errors = [100 * (row["metrics"][metric]["std"] or 0.0) for row in rows]
    axes.errorbar([row[key] for row in rows], means, yerr=errors, fmt="o", color="tab:red", capsize=3, label=label)
    for row, mean in zip(rows, means):
        axes.annotate(row["title"], (row[key], mean), fontsize=7)


def _plot(experiment: Experiment, records: list[dict[str, Any]], output: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        log.warning("no plot: matplotlib is not installed (pip install 'mobilenet-suite[plots]')")
        return
    metric = experiment.metrics[0]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.set_xscale("log")
    plot_against_macs(axes, summarize(experiment, records), metric,
                      label=f"mean ± std over {len({r['seed'] for r in records})} seed(s)")
    axes.set(xlabel="MACs (millions, log scale)", ylabel=f"{metric} (%)", title=experiment.title)
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize=8)
    figure.savefig(output / f"{metric.replace('/', '_')}_vs_macs.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
