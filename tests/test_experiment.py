"""``mobilenets experiment``: experiment files, the seeded equal-budget runs, mean ± std tables and the JSON."""

import json
import statistics

import pytest
import torch
import yaml

from mobilenets.cli import main
from mobilenets.cli.experiment import Experiment, ExperimentRun, experiment_table, run_experiment, summarize
from mobilenets.configs import CONFIG_DIR, config_path
from mobilenets.core.errors import SettingError

#: a dogs demo run small enough for a test: 3 breeds, 20 training images, batch 4 (5 steps an epoch)
TINY = {"data.init_args.synthetic_options": {"num_classes": 3, "train_per_class": 8, "test_per_class": 2},
        "data.init_args.batch_size": 4, "data.init_args.num_workers": 0,
        "model.init_args.backbone.alpha": 0.25, "model.init_args.resolution": 64}


def _write(path, spec):
    path.write_text(yaml.safe_dump(spec))
    return path


def test_every_packaged_experiment_loads_and_names_packaged_configs():
    names = sorted(path.stem for path in (CONFIG_DIR / "experiments").glob("*.yaml"))
    assert names == ["distill_dogs", "distill_face_attributes", "distill_face_embedding", "multitask",
                     "sweep"]
    for name in names:
        experiment = Experiment.load(name)
        assert experiment.steps > 0 and experiment.metrics
        for run in experiment.runs:
            assert config_path(run.config).is_file()
    distill = Experiment.load("distill_dogs")
    assert [run.name for run in distill.runs] == ["teacher", "all_labels", "labels_only", "distilled", "no_labels"]
    no_labels = distill.runs[-1]
    assert no_labels.teacher == "teacher" and no_labels.set == {"data.init_args.label_fraction": 0.0}
    assert no_labels.arguments() == ["--data.init_args.label_fraction", "0.0"]
    assert [run.name for run in distill.only(["distilled"]).runs] == ["teacher", "distilled"]
    batch = distill.overriding({"data.init_args.batch_size": 16}).runs[-1]
    assert batch.arguments() == ["--data.init_args.label_fraction", "0.0", "--data.init_args.batch_size", "16"]
    assert (batch.teacher, no_labels.set) == ("teacher", {"data.init_args.label_fraction": 0.0})  # a copy


@pytest.mark.parametrize("spec, message", [
    (["runs"], "a YAML mapping of title, metrics, steps and runs"),
    ({"title": "t", "metrics": ["test/top1"], "steps": 5}, "needs title, metrics, steps and runs"),
    ({"title": "t", "metrics": ["test/top1"], "steps": 5, "runs": [{"name": "a", "config": "demo/dogs.yaml"}]},
     "needs title, metrics, steps and runs"),
    ({"title": "t", "metrics": ["test/top1"], "steps": 5,
      "runs": [{"name": "a", "title": "A", "config": "demo/dogs.yaml", "teacher": "b"}]},
     "takes its teacher from 'b', which is not a run listed before it"),
    ({"title": "t", "metrics": ["test/top1"], "steps": 5,
      "runs": [{"name": "a", "title": "A", "config": "demo/dogs.yaml"}] * 2}, "two runs are named 'a'"),
    ({"title": "t", "metrics": ["test/top1"], "steps": 0,
      "runs": [{"name": "a", "title": "A", "config": "demo/dogs.yaml"}]}, "steps must be at least 1"),
])
def test_a_bad_experiment_file_is_one_line_naming_the_file(tmp_path, spec, message, capsys):
    path = _write(tmp_path / "bad.yaml", spec)
    with pytest.raises(SettingError, match=message):
        Experiment.load(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", str(path)])
    assert str(exit_info.value).startswith(f"mobilenets: {path}") and message in str(exit_info.value)


def test_summary_is_mean_and_sample_std_over_seeds():
    records = [{"run": "a", "seed": seed, "metrics": {"test/top1": value}, "steps": 10, "batch_size": 4,
                "macs_m": 1.0, "params_m": 0.1, "alpha": 0.25, "resolution": 64}
               for seed, value in enumerate([0.5, 0.7, 0.6])]
    experiment = Experiment("e", "E", ("test/top1",), 10, (ExperimentRun("a", "run a", "demo/dogs.yaml"),))
    [row] = summarize(experiment, records)
    assert row["seeds"] == 3 and row["metrics"]["test/top1"]["mean"] == pytest.approx(0.6)
    assert row["metrics"]["test/top1"]["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6])) == pytest.approx(0.1)
    table = experiment_table(experiment, records).to_markdown()
    assert "| run a | 60.0% ± 10.0 | 3 | 10 | 1.0 | 0.100 |" in table and "seeds 0, 1, 2" in table
    [single] = summarize(experiment, records[:1])
    assert single["metrics"]["test/top1"]["std"] is None
    assert "| run a | 50.0% | 1 |" in experiment_table(experiment, records[:1]).to_markdown()


def test_a_run_reports_its_own_metrics_under_the_experiments_names():
    """A single-task run beside a multi-task one: it reports one of the metrics, under its own logged name, and the
    table leaves the other blank."""
    runs = tuple(Experiment.load("multitask").runs)
    assert runs[0].logged_metrics(["test/face_attributes/mAP", "test/face_embedding/accuracy"]) == {
        "test/face_attributes/mAP": "test/mAP"}
    assert runs[2].logged_metrics(["test/x"]) == {"test/x": "test/x"}
    experiment = Experiment("e", "E", ("test/a", "test/b"), 10, (ExperimentRun("one", "one", "demo/dogs.yaml",
                                                                              metrics={"test/a": "test/top1"}),))
    records = [{"run": "one", "seed": 0, "metrics": {"test/a": 0.5}, "steps": 10, "batch_size": 4, "macs_m": 1.0,
                "params_m": 0.1, "alpha": 0.25, "resolution": 64}]
    assert "| one | 50.0% | — | 1 | 10 |" in experiment_table(experiment, records).to_markdown()


@pytest.mark.slow
def test_runs_are_seeded_take_the_step_budget_and_are_reused(tmp_path, monkeypatch, capsys):
    """Two configs for two seeds at 7 steps (more than an epoch of 5): every run takes exactly 7 optimizer steps,
    each seed reaches the weights (the seeds' trained weights differ, a seed's rerun does not), and the table, the
    JSON and the plot are written; a second call reuses the finished runs."""
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "tiny.yaml", {
        "title": "Tiny", "metrics": ["test/top1"], "steps": 7,
        "runs": [{"name": "adam", "title": "Adam", "config": "demo/dogs.yaml",
                  "set": {**TINY, "model.init_args.optimizer": "Adam", "model.init_args.lr": 0.001}},
                 {"name": "rmsprop", "title": "RMSprop", "config": "demo/dogs.yaml", "set": TINY}]})
    assert main(["experiment", str(path), "--seeds", "2", "--output", "out"]) == 0
    records = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert [(r["run"], r["seed"]) for r in records] == [("adam", 0), ("rmsprop", 0), ("adam", 1), ("rmsprop", 1)]
    assert all(r["steps"] == 7 and r["batch_size"] == 4 for r in records)
    weights = [torch.load(r["checkpoint"], weights_only=False)["state_dict"] for r in records]
    first = next(key for key in weights[0] if key.endswith("weight"))
    assert not torch.equal(weights[0][first], weights[2][first])  # adam, seed 0 against seed 1
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Budget: 7 optimizer steps per run (batch 4)" in table and table.count(" | 2 | 7 | ") == 2
    assert (tmp_path / "out" / "test_top1_vs_macs.png").stat().st_size > 0
    capsys.readouterr()
    main(["experiment", str(path), "--seeds", "2", "--output", "out"])
    assert capsys.readouterr().out.count("| cached") == 4
    with pytest.raises(SystemExit, match="a finished run of other settings .* pass --fresh or another --output"):
        main(["experiment", str(path), "--steps", "8", "--output", "out"])  # not reused at another budget
    main(["experiment", str(path), "--seeds", "1", "--runs", "adam", "--output", "again", "--fresh"])
    rerun = json.loads((tmp_path / "again" / "runs.json").read_text())
    assert len(rerun) == 1
    again = torch.load(rerun[0]["checkpoint"], weights_only=False)["state_dict"]
    assert torch.equal(again[first], weights[0][first])  # the same seed, the same weights
    mine = tmp_path / "mine.yaml"  # a config file of one's own, edited after its run finished: not reused
    mine.write_text(config_path("demo/dogs.yaml").read_text())
    own = _write(tmp_path / "own.yaml", {"title": "Own", "metrics": ["test/top1"], "steps": 7,
                                         "runs": [{"name": "a", "title": "A", "config": str(mine), "set": TINY}]})
    main(["experiment", str(own), "--output", "own"])
    mine.write_text(mine.read_text().replace("lr: 0.05", "lr: 0.01"))
    with pytest.raises(SystemExit, match="config or its file's content"):
        main(["experiment", str(own), "--output", "own"])


@pytest.mark.slow
def test_a_once_teacher_is_trained_for_the_first_seed_and_distills_every_seed(tmp_path, monkeypatch):
    """The packaged distillation configs on tiny data: the teacher trains once at its own budget, both seeds'
    label-free students distill from its checkpoint at the given one, and the summary counts one teacher seed
    and two student seeds."""
    monkeypatch.chdir(tmp_path)
    data = {key: value for key, value in TINY.items() if key.startswith("data.")}
    # the students' data is the dogs data module in a SemiSupervisedDataModule
    semi_supervised = {key.replace("synthetic_options", "datamodule.init_args.synthetic_options"): value
                       for key, value in data.items()}
    path = _write(tmp_path / "distill.yaml", {
        "title": "Tiny distillation", "metrics": ["test/top1"], "steps": 3,
        "runs": [{"name": "teacher", "title": "T", "config": "distill/dogs_teacher.yaml", "once": True, "steps": 4,
                  "set": {**data, "trainer.callbacks": []}},
                 {"name": "no_labels", "title": "S", "config": "distill/dogs.yaml", "teacher": "teacher",
                  "set": {**semi_supervised, "data.init_args.label_fraction": 0.0}}]})
    experiment = Experiment.load(path)
    records = run_experiment(experiment, tmp_path / "out", seeds=2, steps=2)  # the students' budget, not the teacher's
    assert [(r["run"], r["seed"]) for r in records] == [("teacher", 0), ("no_labels", 0), ("no_labels", 1)]
    teacher = records[0]["checkpoint"]
    assert teacher.startswith(str(tmp_path / "out" / "runs" / "teacher" / "seed_0"))
    assert all(r["teacher"] == teacher for r in records[1:])
    rows = {row["run"]: row for row in summarize(experiment, records)}
    assert rows["teacher"]["seeds"] == 1 and rows["no_labels"]["seeds"] == 2
    assert [r["steps"] for r in records] == [4, 2, 2]
    assert "Budget: 2 optimizer steps per run; T: 4 of its own (batch 4)" in experiment_table(experiment,
                                                                                               records).to_markdown()
