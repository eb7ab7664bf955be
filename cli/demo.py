"""``mobilenets demo``: the paper's Section 4 in miniature, on the built-in synthetic data, with a report.

Every stage is a packaged YAML config (``mobilenets.configs``) run through ``MobileNetsCLI`` (fit, then test on the best
checkpoint): the five tasks' demo configs, the width x resolution sweep on dogs, and the dogs distillation
experiment. Each finished stage leaves ``stages/<name>.json``, so a re-run only does what is missing
(``fresh`` starts over). The report folder gets ``report.md`` (one table per paper table, ours beside the
paper's), ``metrics.json``, the paper's Figures 4 and 5 with our points, and each stage's own picture where its
task draws one (``BaseTask.draw``: detections, a geolocation map).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilenets.backbone.profile import PAPER_IMAGENET, profile_model
from mobilenets.cli.lightning import MobileNetsCLI
from mobilenets.configs import config_path
from mobilenets.core.checkpoint import weights_only_for
from mobilenets.core.io import write_text
from mobilenets.distill import trained_task

__all__ = ["PAPER", "STAGES", "Stage", "run_demo"]


#: --quick: a few training batches per stage, then the whole test split (numbers show the plumbing, not accuracy)
QUICK = ("--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
         "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1")


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
    needs_as: str = "--model.init_args.teacher.checkpoint"  # ... given as this argument (default: the teacher)
    options: dict[str, Any] = field(default_factory=dict)


def _epochs(full: int, quick: int = 1, quick_batches: int = 3) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Overrides for a full run of ``full`` epochs and a ``--quick`` one of a few batches."""
    return ("--trainer.max_epochs", str(full)), QUICK + ("--trainer.max_epochs", str(quick),
                                                         "--trainer.limit_train_batches", str(quick_batches))


def _sweep(alpha: float, resolution: int) -> Stage:
    full, quick = _epochs(8)
    return Stage(
        f"sweep_{alpha}_{resolution}", f"{alpha} MobileNet-{resolution}", "demo/dogs.yaml", ("test/top1",), "dogs",
        ("--model.init_args.backbone.alpha", str(alpha), "--model.init_args.resolution", str(resolution), *full),
        quick, options={"alpha": alpha, "resolution": resolution},
    )


STAGES: list[Stage] = [
    Stage("dogs", "Stanford Dogs (Table 10)", "demo/dogs.yaml", ("test/top1", "test/top5"), "dogs",
          *_epochs(30)),
    Stage("geolocation", "PlaNet geolocation (Table 11)", "demo/geolocation.yaml",
          ("test/acc_2500km", "test/acc_750km", "test/acc_200km", "test/acc_25km", "test/acc_1km"), "geo",
          *_epochs(15)),
    Stage("face_attributes", "Face attributes (Table 12)", "demo/face_attributes.yaml", ("test/mAP",), "celeba",
          *_epochs(25)),
    # Detection starts from the dogs stage's backbone, as the paper's detectors start from ImageNet weights.
    Stage("detection", "COCO detection (Table 13)", "demo/detection.yaml", ("test/mAP", "test/mAP50"), "coco",
          *_epochs(16, quick=2), needs="dogs", needs_as="--model.init_args.backbone.pretrained"),
    Stage("face_embedding", "FaceNet embeddings (Table 14)", "demo/face_embedding.yaml",
          ("test/accuracy", "test/auc"), "faces", *_epochs(30)),
    *[_sweep(alpha, resolution) for resolution in (128, 96) for alpha in (1.0, 0.5, 0.25)],
    Stage("distill_teacher", "teacher: 0.5 MobileNet-160, all labels", "distill/dogs_teacher.yaml", ("test/top1",),
          "dogs", *_epochs(12)),
    Stage("distill_labels_only", "student 0.25 MobileNet-128, 10% of labels, equal steps", "distill/dogs_labels_only.yaml",
          ("test/top1",), "dogs", *_epochs(10)),
    Stage("distill_student", "student 0.25 MobileNet-128, 10% labels + teacher", "distill/dogs.yaml",
          ("test/top1",), "dogs", *_epochs(10), needs="distill_teacher"),
]

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
    root = output / "runs" / stage.name
    args = ["--config", str(config_path(stage.config)), "--data.init_args.root", str(output / "data" / stage.data),
            "--trainer.default_root_dir", str(root), *stage.overrides, *(stage.quick if quick else ())]
    if needed:
        args += [stage.needs_as, needed]
    start = time.perf_counter()
    cli = MobileNetsCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    callback = cli.trainer.checkpoint_callback
    best = callback.best_model_path if callback is not None and callback.best_model_path else None
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False,
                              weights_only=weights_only_for(best) if best else None)[0]
    task = trained_task(cli.model)
    resolution = task.hparams.resolution
    profile = profile_model(task.inference_network(), resolution)
    result = {
        "stage": stage.name, "title": stage.title, "config": f"configs/{stage.config}",
        "metrics": {name: float(tested[name]) for name in stage.metrics},
        "macs_m": profile.macs / 1e6, "params_m": profile.params / 1e6, "resolution": resolution,
        "seconds": time.perf_counter() - start, "checkpoint": best or "", **stage.options,
    }
    figure = task.draw(cli.datamodule, output / f"{stage.name}.png")
    if figure is not None:
        result["figure"] = figure.name
    return result


def _plot_tradeoffs(results: dict[str, dict], output: Path) -> None:
    """Figures 4 and 5 of the paper: accuracy against MACs (log scale) and against parameters."""
    from matplotlib import pyplot as plt

    sweep = [r for r in results.values() if r["stage"].startswith("sweep_")]
    paper = sorted(PAPER_IMAGENET.items())
    for key, label, path in (("macs_m", "MACs (millions, log scale)", "accuracy_vs_macs.png"),
                             ("params_m", "parameters (millions, log scale)", "accuracy_vs_params.png")):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        axes.set_xscale("log")
        axes.scatter([r[key] for r in sweep], [100 * r["metrics"]["test/top1"] for r in sweep], color="tab:red",
                     label="ours: top-1, synthetic dogs (demo sweep)")
        for r in sweep:
            axes.annotate(f"{r['alpha']}-{r['resolution']}", (r[key], 100 * r["metrics"]["test/top1"]), fontsize=7)
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


def _task_table(result: dict, key: str) -> list[str]:
    what, rows = PAPER[key]
    metrics = " / ".join(_percent(v) for v in result["metrics"].values())
    lines = [f"## {result['title']}", "", f"Metric: {what} for the paper; on our synthetic data for ours "
             f"({', '.join(result['metrics'])}).", "", "| model | metric | MACs (M) | params (M) |", "|---|---|---|---|",
             f"| **ours**: `{result['config']}` at {result['resolution']} px | {metrics} | {result['macs_m']:.1f} | "
             f"{result['params_m']:.3f} |"]
    lines += [f"| paper: {model} | {metric} | {macs:g} | {params:g} |" for model, metric, macs, params in rows]
    return lines + [""]


def _sweep_table(results: dict[str, dict]) -> list[str]:
    lines = ["## Width and resolution sweep (layout of Tables 6 and 7)", "",
             "Ours: dogs demo config, top-1 on the synthetic breeds; paper: ImageNet top-1 where the paper has the "
             "same model.", "",
             "| model | top-1 (ours) | MACs (M) | params (M) | paper top-1 | paper MACs (M) | paper params (M) |",
             "|---|---|---|---|---|---|---|"]
    for result in results.values():
        if not result["stage"].startswith("sweep_"):
            continue
        paper = PAPER_IMAGENET.get((result["alpha"], result["resolution"]))
        paper_cells = f"{paper[0]}% | {paper[1]} | {paper[2]}" if paper else "- | - | -"
        lines.append(f"| {result['title']} | {_percent(result['metrics']['test/top1'])} | {result['macs_m']:.1f} | "
                     f"{result['params_m']:.3f} | {paper_cells} |")
    return lines + [""]


def _distill_table(results: dict[str, dict]) -> list[str]:
    lines = ["## Distillation (dogs; the paper's Tables 12 and 14 come from distilled students)", "",
             "| model | top-1 | MACs (M) | params (M) |", "|---|---|---|---|"]
    for name in ("distill_teacher", "distill_labels_only", "distill_student"):
        if name in results:
            r = results[name]
            lines.append(f"| {r['title']} | {_percent(r['metrics']['test/top1'])} | {r['macs_m']:.1f} | "
                         f"{r['params_m']:.3f} |")
    return lines + [""]


def write_report(results: dict[str, dict], output: Path, quick: bool) -> Path:
    """``report.md`` and ``metrics.json`` from the stages' results, plus the two trade-off plots."""
    _plot_tradeoffs(results, output)
    lines = ["# MobileNets demo report", "",
             f"`mobilenets demo{' --quick' if quick else ''}`: every model trained from scratch on the built-in "
             "synthetic data (small, learnable, in the real datasets' formats), so the metrics show the pipelines "
             "learn; the paper's numbers are on the real datasets. MACs and parameters are ours, counted the "
             "paper's way.", ""]
    for key in ("dogs", "geolocation", "face_attributes", "detection", "face_embedding"):
        if key in results:
            lines += _task_table(results[key], key)
    lines += _sweep_table(results) + _distill_table(results)
    lines += ["## Figures", "", "![accuracy vs MACs](accuracy_vs_macs.png)", "",
              "![accuracy vs parameters](accuracy_vs_params.png)", ""]
    lines += [line for r in results.values() if r.get("figure") for line in (f"![{r['title']}]({r['figure']})", "")]
    lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {r['seconds']:.0f} |" for name, r in results.items()]
    report = output / "report.md"
    write_text(report, "\n".join(lines) + "\n")
    write_text(output / "metrics.json", json.dumps(results, indent=2))
    return report


def run_demo(output: str | Path = "demo_report", quick: bool = False, fresh: bool = False,
             stages: list[Stage] | None = None) -> Path:
    """Run (or reuse) every stage and write the report; returns the path of ``report.md``."""
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
    report = write_report(results, output, quick)
    print(f"[demo] report: {report}")
    return report
