"""Weights and checkpoints from elsewhere cannot run code: a pickle that would create a file when loaded is refused
everywhere the suite opens files, with an error naming the file and the opt-in, and nothing is created."""

import builtins

import pytest
import torch

from mobilenets.backbone import BackboneConfig, MobileNetV1, save_backbone
from mobilenets.backbone.weights import load_pretrained, read_weights
from mobilenets.cli import main
from mobilenets.core.checkpoint import TRUST_ENV, UntrustedFileError, read_checkpoint
from mobilenets.tasks.data.loading import load_task


class _CreatesAFile:
    """Unpickling this calls open(marker, "w"): the file appears if the loader runs the pickle's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "created-by-the-pickle"
    path = tmp_path / "model.pth"
    torch.save({**MobileNetV1(alpha=0.25).state_dict(), "payload": _CreatesAFile(marker)}, path)
    return path, marker


def test_crafted_weights_are_refused_and_run_nothing(crafted):
    path, marker = crafted
    for load in (read_weights, read_checkpoint, load_task,
                 lambda p: load_pretrained(MobileNetV1(alpha=0.25), p),
                 lambda p: BackboneConfig(alpha=0.25, pretrained=str(p)).build()):
        with pytest.raises(UntrustedFileError, match=rf"{path}: .*needs io.open.*--trust-checkpoint"):
            load(path)
    with pytest.raises(SystemExit, match="model.pth: .*--trust-checkpoint"):
        main(["weights", "convert", str(path), str(path.with_name("out.safetensors"))])
    assert not marker.exists()


def test_trust_checkpoint_flag_is_the_opt_in(crafted, monkeypatch):
    path, marker = crafted
    monkeypatch.setenv(TRUST_ENV, "0")
    with pytest.raises(SystemExit):  # the file loads, runs its code, then is not weights
        main(["--trust-checkpoint", "weights", "convert", str(path), str(path.with_name("out.pth"))])
    assert marker.exists()


def test_the_suites_own_files_load_weights_only(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    save_backbone(MobileNetV1(alpha=0.25, padding="tf_same"), tmp_path / "b.pth")
    assert read_weights(tmp_path / "b.pth").config["padding"] == "tf_same"
    torch.save({"hyper_parameters": {"backbone": BackboneConfig(alpha=0.25)}, "state_dict": {}}, tmp_path / "t.ckpt")
    assert read_checkpoint(tmp_path / "t.ckpt")["hyper_parameters"]["backbone"] == BackboneConfig(alpha=0.25)


def test_lightning_commands_refuse_a_crafted_ckpt_path(crafted, tmp_path, monkeypatch):
    path, marker = crafted
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^mobilenets: .*model.pth: loading it would run code .*--trust-checkpoint"):
        main(["test", "--model", "ClassificationTask", "--model.num_classes", "3", "--model.backbone.alpha", "0.25",
              "--data", "DogsDataModule", "--data.root", "dogs", "--ckpt_path", str(path)])
    assert not marker.exists()


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    (tmp_path / "notes.pth").write_text("hello, not weights")
    with pytest.raises(ValueError, match=r"notes.pth: not a PyTorch checkpoint or weights file"):
        read_weights(tmp_path / "notes.pth")
    torch.save(MobileNetV1(alpha=0.25).state_dict(), tmp_path / "cut.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "cut.pth").read_bytes()[:5000])  # an interrupted download
    with pytest.raises(ValueError, match=r"cut.pth: not a PyTorch checkpoint or weights file"):
        read_checkpoint(tmp_path / "cut.pth")
