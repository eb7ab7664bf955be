"""Training curves where users look: every fit logs to TensorBoard by default (losses, the task's metrics, the
learning rate), with Lightning's CSV file beside it in the same run folder; a logger the config chooses is kept."""

from pathlib import Path

from helpers import DOGS, logged_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mobilenets.cli import main

RUN = [*DOGS, "--model.init_args.backbone.alpha", "0.25", "--model.init_args.resolution", "48",
       "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", "--trainer.max_steps", "3",
       "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]


def test_fit_writes_tensorboard_events_and_the_csv_beside_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *RUN, "--trainer.default_root_dir", "run"])
    (events,) = Path("run").rglob("events.out.tfevents.*")
    assert (events.parent / "metrics.csv").is_file() and (events.parent / "checkpoints" / "last.ckpt").is_file()
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/top1", "lr-RMSprop/backbone/decay", "lr-RMSprop/head/decay"} <= tags
    lr = [event.value for event in accumulator.Scalars("lr-RMSprop/head/decay")]
    assert len(lr) == 3 and lr[0] > lr[-1]  # every step, down the cosine schedule
    csv = [float(row["train/loss"]) for row in logged_metrics(Path("run")) if row.get("train/loss")]
    assert [event.value for event in accumulator.Scalars("train/loss")] == csv


def test_a_logger_the_config_chooses_is_the_only_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *RUN, "--trainer.default_root_dir", "run", "--trainer.logger", "CSVLogger",
          "--trainer.logger.save_dir", "csv_only"])
    assert list(Path("csv_only").rglob("metrics.csv")) and not list(Path(".").rglob("events.out.tfevents.*"))
