"""``mobilenets demo``: the paper's Section 4 in miniature, on the built-in synthetic data, with a report.

Every stage is a packaged YAML config (``mobilenets.configs``) run through ``MobileNetsCLI`` (fit, then test on the best
checkpoint): the five tasks' demo configs, then two packaged experiments (``mobilenets experiment``) at demo-sized
budgets: the width x resolution sweep on dogs and the dogs distillation experiment, one seed each unless
``seeds`` says more. Each finished stage leaves ``stages/<name>.json`` and each experiment run its own JSON, so a
re-run only does what is missing (``fresh`` starts over). The report folder gets ``report.md`` (one table per paper
table, ours beside the paper's), ``metrics.json``, the paper's Figures 4 and 5 with our points (± std where there
are several seeds), and each stage's own picture where its task draws one (``BaseTask.draw``: detections, a
geolocation map)."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenets.backbone.profile import PAPER_IMAGENET
from mobilenets.cli.experiment import (
    QUICK,
    Experiment,
    experiment_table,
    fit_and_test,
    mean_std,
    plot_against_macs,
    run_experiment,
    summarize,
)
from mobilenets.core.io import write_text
from mobilenets.core.results import save_tables
from mobilenets.core.tables import Table, render

__all__ = ["PAPER", "STAGES", "DemoExperiment", "Stage", "demo_experiments", "run_demo"]


@dataclass(frozen=True)
class Stage:
    """One run of the demo: a config, its overrides (full and ``--quick``), and the test metrics it reports."""

    name: str
    title: str
    config: str
    metrics: tuple[str, ...]
    data: str
    overrides: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    needs: str | None = None  # a stage whose best checkpoint this one starts from ...
    needs_as: str = "--model.init_args.backbone.pretrained"  # ... given as this argument (default: its backbone)


@dataclass(frozen=True)
class DemoExperiment:
    """A packaged experiment (``mobilenets experiment``) the demo runs on its data, at a demo-sized budget."""

    experiment: Experiment
    steps: int
    data: str | None  # the runs' data root, output/data/<data>; None: each config's own roots, inside the output


def _epochs(full: int, quick: int = 1, quick_batches: int = 3,
            extra: tuple[str, ...] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Overrides for a full run of ``full`` epochs and a ``--quick`` one of a few batches (``extra`` in both)."""
    return ("--trainer.max_epochs", str(full), *extra), QUICK + ("--trainer.max_epochs", str(quick),
                                                                 "--trainer.limit_train_batches", str(quick_batches),
                                                                 *extra)


STAGES: list[Stage] = [
    Stage("dogs", "Stanford Dogs (Table 10)", "demo/dogs.yaml", ("test/top1", "test/top5"), "dogs",
          *_epochs(30)),
    Stage("geolocation", "PlaNet geolocation (Table 11)", "demo/geolocation.yaml",
          ("test/acc_2500km", "test/acc_750km", "test/acc_200km", "test/acc_25km", "test/acc_1km"), "geo",
          *_epochs(10)),
    Stage("face_attributes", "Face attributes (Table 12)", "demo/face_attributes.yaml", ("test/mAP",), "celeba",
          *_epochs(12)),
    # Detection starts from the dogs stage's backbone, as the paper's detectors start from ImageNet weights, and
    # keeps its first two layers (the costliest to train at 300 px) as the dogs stage left them. 24 epochs (the
    # config's own): test mAP50 is 0.45-0.54 over four seeds at 16 epochs, about 0.60 at 24.
    Stage("detection", "COCO detection (Table 13)", "demo/detection.yaml", ("test/mAP", "test/mAP50"), "coco",
          *_epochs(24, quick=2, extra=("--model.init_args.trainable_backbone_layers", "12")), needs="dogs"),
    Stage("face_embedding", "FaceNet embeddings (Table 14)", "demo/face_embedding.yaml",
          ("test/accuracy", "test/auc"), "faces", *_epochs(14)),
]


#: Both demo experiments train at half the packaged experiments' batch, to fit the demo's 10 minutes on 2 cores.
DEMO_BATCH = {"data.init_args.batch_size": 16}


def demo_experiments() -> list[DemoExperiment]:
    """The width x resolution sweep at alpha 0.5 and 0.25 (the 1.0 runs cost half of the whole sweep), 128 steps
    each, and the dogs distillation experiment at 80 steps per student (the teacher keeps its own 220); both at
    batch 16 (``DEMO_BATCH``). The multi-task model against its two single-task models, 120 steps each at 96 px
    (the joint model's data module takes a batch per head), on its configs' own data folders inside the output.
    Below the packaged budgets: the demo shows the tables, the packaged experiments (``mobilenets experiment``,
    over 3 seeds) measure them."""
    sweep = Experiment.load("sweep").only(["0.5_128", "0.25_128", "0.5_96", "0.25_96"]).overriding(DEMO_BATCH)
    multitask = (Experiment.load("multitask").only(["attributes_alone", "embedding_alone", "joint"])
                 .overriding({"model.init_args.resolution": 96}))
    return [DemoExperiment(sweep, 128, "dogs"),
            DemoExperiment(Experiment.load("distill_dogs").overriding(DEMO_BATCH), 80, "dogs"),
            DemoExperiment(multitask, 120, None)]


#: The paper's rows for each report table: (model, metric, MACs in millions, params in millions).
PAPER: dict[str, tuple[str, list[tuple[str, str, float, float]]]] = {
    "dogs": ("top-1, Stanford Dogs", [("1.0 MobileNet-224", "83.3%", 569, 3.3), ("0.75 MobileNet-224", "81.9%", 325, 1.9),
                                      ("1.0 MobileNet-192", "81.9%", 418, 3.3), ("0.75 MobileNet-192", "80.5%", 239, 1.9)]),
    "geolocation": ("within 2500 / 750 / 200 / 25 / 1 km, Im2GPS",
                    [("PlaNet-MobileNet", "79.3 / 60.3 / 45.2 / 31.7 / 11.4%", 580, 13)]),
    "face_attributes": ("mean AP, 40 CelebA attributes", [("1.0 MobileNet-224", "88.7%", 568, 3.2),
                                                          ("0.5 MobileNet-128", "87.7%", 48, 0.8),
                                                          ("0.25 MobileNet-128", "86.4%", 15, 0.2)]),
    "detection": ("mAP@[.5:.95] / mAP50, COCO", [("SSD 300 MobileNet", "19.3% / -", 1200, 6.8)]),
    "face_embedding": ("accuracy at 1e-4 FAR, LFW-style", [("1.0 MobileNet-160", "79.4%", 286, 4.9),
                                                           ("1.0 MobileNet-128", "78.3%", 185, 5.5)]),
}


def _run_stage(stage: Stage, output: Path, quick: bool, needed: str | None) -> dict[str, Any]:
    args = ["--data.init_args.root", str(output / "data" / stage.data),
            "--trainer.default_root_dir", str(output / "runs" / stage.name), *stage.overrides,
            *(stage.quick if quick else ())]
    if needed:
        args += [stage.needs_as, needed]
    trained = fit_and_test(stage.config, args, stage.metrics)
    result = {"stage": stage.name, "title": stage.title, **trained.result, "config": f"configs/{stage.config}"}
    figure = trained.task.draw(trained.datamodule, output / f"{stage.name}.png")
    if figure is not None:
        result["figure"] = figure.name
    return result


def _plot_tradeoffs(sweep: list[dict[str, Any]], seeds: int, output: Path) -> None:
    """Figures 4 and 5 of the paper: accuracy against MACs (log scale) and against parameters, our sweep's
    mean with ± std error bars over its seeds beside the paper's ImageNet points."""
    from matplotlib import pyplot as plt

    paper = sorted(PAPER_IMAGENET.items())
    for key, label, path in (("macs_m", "MACs (millions, log scale)", "accuracy_vs_macs.png"),
                             ("params_m", "parameters (millions, log scale)", "accuracy_vs_params.png")):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        axes.set_xscale("log")
        plot_against_macs(axes, sweep, "test/top1", key,
                          label=f"ours: top-1, synthetic dogs (demo sweep, {seeds} seed{'s' if seeds > 1 else ''})")
        column = 1 if key == "macs_m" else 2
        axes.scatter([row[column] for _, row in paper], [row[0] for _, row in paper], color="tab:blue",
                     label="paper: top-1, ImageNet (Tables 6-7)")
        for (alpha, size), row in paper:
            axes.annotate(f"{alpha}-{size}", (row[column], row[0]), fontsize=7)
        axes.set(xlabel=label, ylabel="top-1 accuracy (%)")
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize=8)
        figure.savefig(output / path, dpi=120, bbox_inches="tight")
        plt.close(figure)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _task_table(result: dict, key: str) -> Table:
    what, rows = PAPER[key]
    metrics = " / ".join(_percent(v) for v in result["metrics"].values())
    cells = [[f"**ours**: `{result['config']}` at {result['resolution']} px", metrics, f"{result['macs_m']:.1f}",
              f"{result['params_m']:.3f}"]]
    cells += [[f"paper: {model}", metric, f"{macs:g}", f"{params:g}"] for model, metric, macs, params in rows]
    return Table(key=key, title=result["title"], columns=["model", "metric", "MACs (M)", "params (M)"], rows=cells,
                 notes=[f"Metric: {what} for the paper; on our synthetic data for ours ({', '.join(result['metrics'])})."])


def _sweep_table(sweep: list[dict[str, Any]], seeds: int) -> Table:
    std = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (`--seeds 3` gives mean ± std)"
    cells = []
    for row in sweep:
        paper = PAPER_IMAGENET.get((row["alpha"], row["resolution"]))
        cells.append([row["title"], mean_std(row["metrics"]["test/top1"], percent=True), f"{row['macs_m']:.1f}",
                      f"{row['params_m']:.3f}", *([f"{paper[0]}%", paper[1], paper[2]] if paper else ["-"] * 3)])
    return Table(key="sweep", title="Width and resolution sweep (layout of Tables 6 and 7)",
                 columns=["model", "top-1 (ours)", "MACs (M)", "params (M)", "paper top-1", "paper MACs (M)",
                          "paper params (M)"], rows=cells,
                 notes=[f"Ours: dogs demo config, top-1 on the synthetic breeds, {sweep[0]['steps']} optimizer steps "
                        f"each, {std}; paper: ImageNet top-1 where the paper has the same model."])


def report_tables(results: dict[str, dict], experiments: dict[str, dict], seeds: int = 1) -> list[Table]:
    """The report's tables: one per task stage (ours beside the paper's), the sweep in the layout of Tables 6/7,
    one per other experiment, and the seconds each stage and run took."""
    tables = [_task_table(results[key], key) for key in PAPER if key in results]
    for name, done in experiments.items():
        if name == "sweep":
            tables.append(_sweep_table(summarize(done["experiment"], done["runs"]), seeds))
        elif done["runs"]:
            tables.append(experiment_table(done["experiment"], done["runs"]))
    seconds = [[name, f"{r['seconds']:.0f}"] for name, r in results.items()]
    seconds += [[f"{name}: {r['run']}, seed {r['seed']}", f"{r['seconds']:.0f}"]
                for name, done in experiments.items() for r in done["runs"]]
    return tables + [Table(key="seconds", title="Time per stage", columns=["stage", "seconds"], rows=seconds)]


def write_report(results: dict[str, dict], experiments: dict[str, dict], output: Path, quick: bool,
                 seeds: int = 1) -> list[Table]:
    """``report.md`` and ``metrics.json`` from the stages' and experiments' results, plus the two trade-off plots
    (``experiments``: name -> {"experiment", "runs"}); returns the report's tables."""
    summaries = {name: summarize(done["experiment"], done["runs"]) for name, done in experiments.items()}
    if summaries.get("sweep"):
        _plot_tradeoffs(summaries["sweep"], seeds, output)
    tables = report_tables(results, experiments, seeds)
    lines = ["# MobileNets demo report", "",
             f"`mobilenets demo{' --quick' if quick else ''}`: every model trained from scratch on the built-in "
             "synthetic data (small, learnable, in the real datasets' formats), so the metrics show the pipelines "
             "learn; the paper's numbers are on the real datasets. MACs and parameters are ours, counted the "
             "paper's way.", "", render(tables[:-1])]
    if summaries.get("sweep"):
        lines += ["### Figures", "", "![accuracy vs MACs](accuracy_vs_macs.png)", "",
                  "![accuracy vs parameters](accuracy_vs_params.png)", ""]
    lines += [line for r in results.values() if r.get("figure") for line in (f"![{r['title']}]({r['figure']})", "")]
    lines.append(tables[-1].to_markdown())
    write_text(output / "report.md", "\n".join(lines))
    metrics = {"stages": results, "experiments": {name: {"runs": done["runs"], "summary": summaries[name]}
                                                  for name, done in experiments.items()}}
    write_text(output / "metrics.json", json.dumps(metrics, indent=2))
    return tables


def run_demo(output: str | Path = "demo_report", quick: bool = False, fresh: bool = False,
             stages: list[Stage] | None = None, experiments: list[DemoExperiment] | None = None,
             seeds: int = 1, save: str | Path | None = None, command: str = "mobilenets demo") -> Path:
    """Run (or reuse) every stage and experiment (``seeds`` seeds each) and write the report; returns the path
    of ``report.md``. ``save``: a results file to add the report's tables to, with ``command`` and the rest of
    their provenance."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise SystemExit("the demo report draws plots with matplotlib: pip install 'mobilenet-suite[plots]'") from None
    output = Path(output)
    if fresh and output.exists():
        shutil.rmtree(output)
    (output / "stages").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for stage in STAGES if stages is None else stages:
        saved = output / "stages" / f"{stage.name}.json"
        if saved.is_file():
            results[stage.name] = json.loads(saved.read_text())
            status = "cached"
        else:
            needed = results[stage.needs]["checkpoint"] if stage.needs else None
            results[stage.name] = _run_stage(stage, output, quick, needed)
            write_text(saved, json.dumps(results[stage.name], indent=2))
            status = f"{results[stage.name]['seconds']:.0f} s"
        result = results[stage.name]
        values = ", ".join(f"{name} {value:.3f}" for name, value in result["metrics"].items())
        if not all(math.isfinite(v) for v in result["metrics"].values()):
            raise RuntimeError(f"stage {stage.name}: a metric is not finite: {values}")
        print(f"[demo] {stage.name:<20} {values} | {result['macs_m']:.1f}M MACs, {result['params_m']:.3f}M params "
              f"| {status}", flush=True)
    done: dict[str, dict] = {}
    for planned in demo_experiments() if experiments is None else experiments:
        experiment = planned.experiment
        folder = (output / "experiments" / experiment.name).resolve()
        # runs on several datasets (a multi-task model's) keep their configs' relative roots, under the output
        with contextlib.chdir(output) if planned.data is None else contextlib.nullcontext():
            data_root = None if planned.data is None else (output / "data" / planned.data).resolve()
            runs = run_experiment(experiment, folder, seeds=seeds, steps=planned.steps, quick=quick, progress="demo",
                                  data_root=data_root)
        done[experiment.name] = {"experiment": experiment, "runs": runs}
    tables = write_report(results, done, output, quick, seeds)
    print(f"[demo] report: {output / 'report.md'}")
    if save is not None:
        print(f"[demo] saved {len(tables)} tables to {save_tables(tables, save, command)}")
    return output / "report.md"
