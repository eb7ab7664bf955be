"""A sixth task (``scenes``, in this folder) runs synth, fit, test, export, serve, a subcommand of its own,
distillation and a multi-task head taught by its checkpoint through the suite's shared code, without any package of
the suite knowing it: docs/design.md, proven."""

import json

import pytest
import yaml
from fastapi.testclient import TestClient

from mobilenets.cli import main
from mobilenets.deploy.serve import ServeSettings, create_app
from mobilenets.tasks.registry import TASKS, register_task


@pytest.fixture
def scenes_registered():
    register_task("scenes", "scenes", "write_scenes", commands=True)
    yield
    TASKS.pop("scenes")


def write_config(path, model, data_root, run_dir, epochs):
    config = {"seed_everything": 0, "model": model,
              "data": {"class_path": "scenes.data.ScenesDataModule",
                       "init_args": {"root": str(data_root), "batch_size": 8, "num_workers": 0,
                                     "val_fraction": 0.25, "persistent_workers": False}},
              "trainer": {"max_epochs": epochs, "default_root_dir": str(run_dir), "logger": False,
                          "enable_progress_bar": False, "enable_model_summary": False}}
    path.write_text(yaml.safe_dump(config))
    return str(path)


# The demo configs' recipe (RMSprop, lr 0.05): ten short epochs separate day from night.
SCENE_TASK = {"class_path": "scenes.task.SceneTask",
              "init_args": {"backbone": {"alpha": 0.25}, "resolution": 32, "lr": 0.05}}
SCENE_PARTS = {**SCENE_TASK, "class_path": "scenes.task.Scenes"}  # a student or a head: the task's parts


@pytest.mark.slow
def test_a_sixth_task_runs_through_the_shared_code(tmp_path, scenes_registered, capsys):
    data = tmp_path / "scenes"
    assert main(["synth", "scenes", str(data), "--option", "per_class=30"]) == 0
    assert len(list(data.rglob("*.png"))) == 120

    config = write_config(tmp_path / "scenes.yaml", SCENE_TASK, data, tmp_path / "run", epochs=10)
    main(["fit", "--config", config])
    (best,) = (tmp_path / "run").rglob("best-epoch=*.ckpt")  # BaseTask wired the task's monitor into checkpointing
    main(["test", "--config", config, "--ckpt_path", str(best)])

    assert main(["export", str(best), "--output", str(tmp_path / "export"), "--no-int8"]) == 0
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["task"] == "scenes.task.SceneTask"
    assert report["parity"]["onnx"]["probabilities_max_abs_diff"] < 1e-4
    pytorch, onnx = report["metrics"]["pytorch"]["accuracy"], report["metrics"]["onnx"]["accuracy"]
    assert pytorch == onnx and pytorch >= 0.9, report["metrics"]  # the task's own metric, scored by the protocol
    with TestClient(create_app(ServeSettings(str(tmp_path / "export" / "model.onnx")))) as client:
        photo = next(data.rglob("*.png")).read_bytes()
        answer = client.post("/predict", files={"image": ("scene.png", photo)}).json()
    assert len(answer["probabilities"]) == 2 and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-5)

    student = {"class_path": "DistillationTask",
               "init_args": {"student": SCENE_PARTS, "teacher": {"checkpoint": str(best)}, "resolution": 32}}
    config = write_config(tmp_path / "distill.yaml", student, data, tmp_path / "distill", epochs=1)
    main(["fit", "--config", config])
    assert list((tmp_path / "distill").rglob("best-epoch=*.ckpt"))

    capsys.readouterr()
    assert main(["scenes-count", str(data)]) == 0  # its own subcommand, from its commands room
    assert capsys.readouterr().out.splitlines() == ["train: day 30, night 30", "test: day 30, night 30"]

    head = {**SCENE_PARTS, "init_args": {"lr": 0.05}}  # a head takes the multi-task model's body and resolution
    multitask = {"class_path": "MultiTask",
                 "init_args": {"heads": {"scenes": head}, "backbone": {"alpha": 0.25}, "resolution": 32,
                               "teachers": {"scenes": {"checkpoint": str(best)}}}}
    config = write_config(tmp_path / "multitask.yaml", multitask, data, tmp_path / "multitask", epochs=1)
    settings = yaml.safe_load(open(config))
    settings["data"] = {"class_path": "MultiTaskDataModule", "init_args": {"datamodules": {"scenes": {
        "class_path": "scenes.data.ScenesDataModule",
        "init_args": {"root": str(data), "batch_size": 8, "num_workers": 0, "val_fraction": 0.25}}}}}
    del settings["trainer"]["logger"]  # the command's default loggers: metrics.csv beside TensorBoard's events
    settings["trainer"]["log_every_n_steps"] = 1
    open(config, "w").write(yaml.safe_dump(settings))
    main(["fit", "--config", config])
    logged = open(next((tmp_path / "multitask").rglob("metrics.csv"))).readline().strip().split(",")
    assert {"train/scenes/distill_loss", "val/scenes/accuracy"} <= set(logged)
