"""``init_from``: a task starts from the weights of a suite checkpoint or a backbone weights file, strictly or
keeping what fits, and says in one line what it loaded."""

import logging

import pytest
import torch
from helpers import DOGS, QUICK

from mobilenets.backbone import BackboneConfig, save_backbone
from mobilenets.cli import main
from mobilenets.core.checkpoint import read_checkpoint
from mobilenets.core.errors import SettingError
from mobilenets.tasks.classification import ClassificationTask
from mobilenets.tasks.face_attributes import FaceAttributesTask
from mobilenets.tasks.data.loading import load_task

SMALL = dict(backbone=BackboneConfig(alpha=0.25), resolution=48)


def _equal(first: dict, second: dict, prefix: str) -> bool:
    keys = [key for key in first if key.startswith(prefix)]
    return bool(keys) and all(torch.equal(first[key], second[key]) for key in keys)


def test_a_task_checkpoint_fills_the_same_task_strictly(checkpoints, caplog):
    path = checkpoints / "dogs" / "model.ckpt"
    trained = load_task(path).state_dict()
    with caplog.at_level(logging.INFO, logger="mobilenets"):
        task = ClassificationTask(num_classes=3, init_from=str(path), **SMALL)
    assert _equal(trained, task.state_dict(), "model.")
    (line,) = [record.message for record in caplog.records if record.message.startswith("init_from")]
    assert line == f"init_from {path}: loaded {len(trained)} of {len(trained)} tensors (model.backbone, " \
                   f"model.head); left as built: none"


def test_another_class_count_is_refused_strictly_and_keeps_the_body_otherwise(checkpoints, caplog):
    path = checkpoints / "dogs" / "model.ckpt"
    with pytest.raises(SettingError, match=r"2 of the model's \d+ tensors would stay as built .*"
                                           r"'model.head.bias', 'model.head.weight'.*init_strict: false"):
        ClassificationTask(num_classes=5, init_from=str(path), **SMALL)
    with caplog.at_level(logging.INFO, logger="mobilenets"):
        task = ClassificationTask(num_classes=5, init_from=str(path), init_strict=False, **SMALL)
    trained = load_task(path).state_dict()
    assert _equal(trained, task.state_dict(), "model.backbone.")
    assert task.state_dict()["model.head.weight"].shape == (5, trained["model.head.weight"].shape[1])
    (line,) = [record.message for record in caplog.records if record.message.startswith("init_from")]
    assert line.endswith("left as built: model.head.bias, model.head.weight")


def test_a_backbone_file_or_a_distillers_checkpoint_fills_another_task(checkpoints, tmp_path):
    trained = load_task(checkpoints / "dogs" / "model.ckpt")
    save_backbone(trained.backbone, tmp_path / "body.pth")
    faces = FaceAttributesTask(num_attributes=4, init_from=str(tmp_path / "body.pth"), **SMALL)
    assert _equal({f"model.backbone.{k}": v for k, v in trained.backbone.state_dict().items()}, faces.state_dict(),
                  "model.backbone.")
    checkpoint = torch.load(checkpoints / "dogs" / "model.ckpt", weights_only=False)
    checkpoint["state_dict"] = {f"student.{key}": value for key, value in checkpoint["state_dict"].items()}
    torch.save(checkpoint, tmp_path / "distilled.ckpt")  # a DistillationTask's: its student's weights
    student = ClassificationTask(num_classes=3, init_from=str(tmp_path / "distilled.ckpt"), **SMALL)
    assert _equal(trained.state_dict(), student.state_dict(), "model.")
    with pytest.raises(SettingError, match="init_from .* and backbone.pretrained .* both set"):
        ClassificationTask(num_classes=3, init_from=str(tmp_path / "body.pth"),
                           backbone=BackboneConfig(alpha=0.25, pretrained=str(tmp_path / "body.pth")))


def test_init_from_through_the_cli_and_a_checkpoint_that_reloads_without_the_file(checkpoints, tmp_path,
                                                                                    monkeypatch, capsys):
    monkeypatch.chdir(checkpoints)
    main(["fit", *DOGS, *QUICK, "--model.init_args.init_from", "dogs/model.ckpt", "--trainer.default_root_dir",
          str(tmp_path / "run"), "--trainer.callbacks", "pytorch_lightning.callbacks.ModelCheckpoint",
          "--trainer.callbacks.dirpath", str(tmp_path / "run"), "--trainer.callbacks.filename", "tuned"])
    assert "[mobilenets] init_from dogs/model.ckpt: loaded" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # dogs/model.ckpt is not here: the tuned checkpoint holds its own weights
    tuned = tmp_path / "run" / "tuned.ckpt"
    assert read_checkpoint(tuned)["hyper_parameters"]["init_from"] == "dogs/model.ckpt"
    assert load_task(tuned).hparams.num_classes == 3
    data = ["--data.init_args.root", str(checkpoints / "dogs")]  # the data, but not the file it started from
    main(["test", *DOGS, *data, *QUICK, "--ckpt_path", str(tuned), "--trainer.default_root_dir", "tested"])
