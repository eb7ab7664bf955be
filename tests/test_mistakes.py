"""What the suite says to the mistakes users make and the folders they keep: one line naming the cause and the fix,
never a traceback or a usage dump; and what it sends from their machine (nothing, unless asked)."""

import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import yaml
from helpers import DOGS, QUICK

from mobilenets.cli import main
from mobilenets.deploy.runtimes import TELEMETRY_ENV, telemetry_off
from mobilenets.tasks.base import BaseTask


def test_profile_of_a_config_whose_size_is_left_to_the_data_ends_in_one_line():
    with pytest.raises(SystemExit, match="paper/dogs.yaml: ClassificationTask has no model yet: num_classes is left"):
        main(["profile", "--config", "paper/dogs.yaml"])


def test_profile_does_not_hide_an_attribute_error_of_a_broken_model(monkeypatch):
    """Only "the model is not built yet" becomes the one line; a defect in a model's code still shows itself."""
    def broken(self):
        raise AttributeError("'MobileNetV1' object has no attribute 'blocks'")

    monkeypatch.setattr(BaseTask, "profile_rows", broken)
    with pytest.raises(AttributeError, match="has no attribute 'blocks'"):
        main(["profile", "--config", "demo/dogs.yaml"])


def test_nncf_telemetry_is_off_unless_the_user_turns_it_on(tmp_path, monkeypatch):
    """NNCF as the suite imports it, in a fresh process (NNCF itself turns telemetry off under pytest): a stub that
    sends nothing (``CI=true`` and a fresh home would keep a real one from sending or writing anything here). With
    ``MOBILENETS_TELEMETRY=1`` the suite leaves NNCF's switch alone."""
    env = {key: value for key, value in os.environ.items() if key not in ("NNCF_CI", "NNCF_DEV", TELEMETRY_ENV)}
    env.update(CI="true", HOME=str(tmp_path))
    code = ("from mobilenets.deploy.runtimes import import_nncf; import_nncf(); "
            "import nncf.telemetry.wrapper as w; print(isinstance(w.telemetry, w.NNCFTelemetry))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # NNCF's stub is a MagicMock that sends nothing
    monkeypatch.delenv("NNCF_CI", raising=False)
    monkeypatch.setenv(TELEMETRY_ENV, "1")
    assert telemetry_off() is False and "NNCF_CI" not in os.environ


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_checkpoint_of_another_task_is_refused_before_anything_runs(checkpoints, monkeypatch, subcommand):
    monkeypatch.chdir(checkpoints)
    with pytest.raises(SystemExit) as refused:
        main([subcommand, *DOGS, *QUICK, "--ckpt_path", "faces/model.ckpt"])
    assert str(refused.value) == (
        "mobilenets: faces/model.ckpt is a FaceAttributesTask checkpoint, but the config's model is a "
        "ClassificationTask: give --ckpt_path a ClassificationTask checkpoint, or a FaceAttributesTask config with "
        "this checkpoint")


def test_export_with_another_tasks_data_names_the_checkpoints_task(checkpoints, monkeypatch):
    monkeypatch.chdir(checkpoints)
    with pytest.raises(SystemExit, match=r"^mobilenets: faces/model.ckpt holds a FaceAttributesTask trained on "
                                         r"CelebADataModule data, which cannot be read there \(dogs/list_attr_celeba"
                                         r"\.txt: CelebA attribute file not found\); point --data-root at such data"):
        main(["export", "faces/model.ckpt", "--data-root", "dogs", "--no-int8", "--output", "exported"])
    assert not os.path.exists("exported/model.onnx")  # refused before anything is exported


def test_pretrained_weights_of_another_width_name_the_width_to_set(checkpoints, monkeypatch):
    monkeypatch.chdir(checkpoints)
    with pytest.raises(SystemExit) as refused:
        main(["fit", *DOGS, *QUICK, "--model.init_args.backbone.alpha", "0.5", "--model.init_args.backbone.pretrained",
              "faces/model.ckpt"])
    message = str(refused.value)
    assert message.startswith("mobilenets: faces/model.ckpt does not fit this backbone (alpha=0.5, layers 0..13), "
                              "the file's alpha is 0.25: set backbone.alpha: 0.25; ") and "\n" not in message


def test_a_teacher_of_another_task_or_other_outputs_is_refused_naming_it(checkpoints):
    from mobilenets.backbone import BackboneConfig
    from mobilenets.distill import DistillationTask
    from mobilenets.tasks.classification import Classification
    from mobilenets.tasks.distillation.teachers import TeacherConfig

    def student(num_classes):
        return Classification(num_classes=num_classes, backbone=BackboneConfig(alpha=0.25), resolution=48)

    faces, dogs = str(checkpoints / "faces" / "model.ckpt"), str(checkpoints / "dogs" / "model.ckpt")
    with pytest.raises(ValueError, match=f"^{faces} is a FaceAttributesTask checkpoint: it cannot teach a "
                                         f"ClassificationTask student; give a ClassificationTask checkpoint"):
        DistillationTask(student(3), TeacherConfig(checkpoint=faces), resolution=48)
    with pytest.raises(ValueError, match=rf"^{dogs}: the teacher gives class logits of shape \(3,\), the student "
                                         rf"\(5,\): they must predict the same labels"):
        DistillationTask(student(5), TeacherConfig(checkpoint=dogs), resolution=48)
    assert DistillationTask(student(3), TeacherConfig(checkpoint=dogs), resolution=48).student.hparams.num_classes == 3


class DamageAfterFirstEpoch(pl.Callback):
    """Truncates every training image once the first epoch is over, as a failing disk or an interrupted copy."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            for record in trainer.datamodule.datasets["train"].records:
                record.path.write_bytes(record.path.read_bytes()[:100])


@pytest.mark.parametrize("workers", ["0", "1"])
def test_an_image_damaged_during_training_ends_in_one_line_and_the_last_checkpoint_loads(tmp_path, monkeypatch,
                                                                                        workers):
    """Met in a loader worker or in the main process, without ``skip_bad``: the record's own line with the hint,
    no worker traceback; ``last.ckpt`` of the finished epoch is whole and loads."""
    from mobilenets.core.checkpoint import read_checkpoint
    from mobilenets.tasks.data.loading import load_task

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["fit", *DOGS, "--model.init_args.backbone.alpha", "0.25", "--model.init_args.resolution", "48",
              "--data.init_args.num_workers", workers, "--data.init_args.batch_size", "4", "--trainer.max_epochs", "2",
              "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", "run", "--trainer.callbacks+", "test_mistakes.DamageAfterFirstEpoch"])
    message = str(stopped.value)
    assert "\n" not in message and "DataLoader worker" not in message, message
    assert message.startswith("mobilenets: ") and ": unreadable image: " in message
    assert message.endswith("; to leave such records out (counted and logged), set data.init_args.skip_bad: true")
    (last,) = list((tmp_path / "run").rglob("last.ckpt"))
    checkpoint = read_checkpoint(last)
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] > 0  # the first epoch's, whole
    assert load_task(last).training is False


@pytest.mark.parametrize("args, expected", [
    (["--model.init_args.backbone.alpah=0.5"],
     "fit: model.init_args.backbone.alpah: ClassificationTask takes no such argument; did you mean alpha?"),
    (["--data.init_args.batch_siz", "3"],
     "fit: data.init_args.batch_siz: DogsDataModule takes no such argument; did you mean batch_size?"),
    (["--trainr.max_epochs", "2"],
     "fit: trainr.max_epochs: no such option; did you mean trainer.max_epochs or trainer.min_epochs or "
     "trainer.max_steps?"),
    (["--model.init_args.lr", "fast"], "fit: model.init_args.lr: Expected a <class 'float'>. Got value: fast"),
])
def test_a_misspelt_option_is_named_with_the_closest_keys_and_no_usage(args, expected, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["fit", "--config", "demo/dogs.yaml", *args])
    assert str(refused.value) == f"mobilenets: {expected}"
    assert "usage:" not in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("model:\n  init_args:\n    backbone: {alpah: 0.5}\n",
     "fit: model.init_args.backbone.alpah: ClassificationTask takes no such argument; did you mean alpha?"),
    ("data:\n  init_args:\n    augmentation: {hflp: false}\n",
     "fit: data.init_args.augmentation.hflp: DogsDataModule takes no such argument; did you mean hflip?"),
    ("trainer:\n  max_epoch: 3\n",
     "fit: trainer.max_epoch: no such option; did you mean max_epochs or min_epochs or max_steps?"),
    ("data:\n  init_args:\n    label_fraction: 0.1\n",  # where configs written before put it
     "fit: data.init_args.label_fraction: DogsDataModule takes no such argument; distillation's data settings are a "
     "SemiSupervisedDataModule's: wrap the data module in one (data.class_path: SemiSupervisedDataModule, with this "
     "setting and datamodule: the data module in its init_args)"),
    ("trainr:\n  max_epochs: 3\n",
     "fit: trainr.max_epochs: no such option; did you mean trainer.max_epochs or trainer.min_epochs or "
     "trainer.max_steps?"),
])
def test_a_misspelt_key_in_a_config_file_is_named_in_full(text, expected, tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(SystemExit) as refused:
        main(["fit", "--config", "demo/dogs.yaml", "--config", str(tmp_path / "mine.yaml")])
    assert str(refused.value) == f"mobilenets: {expected}"
    assert "usage:" not in capsys.readouterr().err


@pytest.mark.parametrize("config, text, expected", [
    ("distill/dogs.yaml", "model:\n  init_args:\n    student:\n      init_args: {lrr: 0.1}\n",
     "fit: model.init_args.student.init_args.lrr: Classification takes no such argument; did you mean lr?"),
    ("demo/multitask.yaml", "model:\n  init_args:\n    heads:\n      face_embedding:\n        init_args: {marginn: 1}\n",
     "fit: model.init_args.heads.face_embedding.init_args.marginn: FaceEmbedding takes no such argument; did you "
     "mean margin?"),
    ("demo/multitask.yaml", "model:\n  init_args:\n    teachers:\n      face_attributes: {checkpiont: a.ckpt}\n",
     "fit: model.init_args.teachers.face_attributes: a teacher takes no 'checkpiont'; did you mean checkpoint?"),
    ("demo/multitask.yaml",
     "model:\n  init_args:\n    teachers:\n      face_embedding: {checkpoint: a.ckpt, arch: 'timm:x'}\n",
     "fit: model.init_args.teachers.face_embedding: a teacher needs exactly one of checkpoint, arch, class_path; got "
     "['checkpoint', 'arch']"),
    ("distill/dogs.yaml", "data:\n  init_args:\n    datamodule:\n      init_args: {val_fractio: 0.2}\n",
     "fit: data.init_args.datamodule.init_args.val_fractio: DogsDataModule takes no such argument; did you mean "
     "val_fraction?"),
])
def test_a_misspelt_key_inside_a_nested_part_fails_at_parse_time_named_in_full(config, text, expected, tmp_path):
    """A distiller's student, a multi-task model's heads and teachers, and a wrapped data module are parsed with
    the config: a bad key in them stops the command before anything is built, named from the config's top."""
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(SystemExit) as refused:
        main(["fit", "--config", config, "--config", str(tmp_path / "mine.yaml"), "--print_config"])
    assert str(refused.value) == f"mobilenets: {expected}"


def test_print_config_shows_every_nested_part_with_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", "demo/multitask.yaml", "--model.init_args.teachers", "{face_attributes: a.ckpt}",
              "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    model, data = printed["model"]["init_args"], printed["data"]["init_args"]
    assert model["heads"]["face_embedding"]["init_args"]["margin"] == 0.2  # a default the config leaves out
    assert model["teachers"]["face_attributes"] == {**{field: None for field in model["teachers"][
        "face_attributes"]}, "checkpoint": "a.ckpt", "compile": False}  # a path alone is a checkpoint
    assert data["datamodules"]["face_embedding"]["init_args"]["skip_bad"] is False
    with pytest.raises(SystemExit):
        main(["fit", "--config", "distill/dogs.yaml", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["student"]["init_args"]["label_smoothing"] == 0.0
    assert printed["data"]["init_args"]["label_fraction"] == 0.1
    assert printed["data"]["init_args"]["datamodule"]["init_args"]["seed"] == 0


def test_an_experiment_given_to_fit_names_the_experiment_command(tmp_path):
    with pytest.raises(SystemExit, match=r"^mobilenets: experiments/sweep.yaml is an experiment \(runs compared under "
                                         r"one budget\), not a Lightning config: run mobilenets experiment "
                                         r"experiments/sweep.yaml$"):
        main(["fit", "--config", "experiments/sweep.yaml"])
    (tmp_path / "mine.yaml").write_text("title: mine\nmetrics: [test/top1]\nsteps: 10\nruns: []\n")
    with pytest.raises(SystemExit, match="mine.yaml is an experiment"):
        main(["test", f"--config={tmp_path / 'mine.yaml'}"])
