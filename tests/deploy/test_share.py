"""``mobilenets weights export --to timm | transformers``: the file timm loads and the folder transformers loads
give the suite's logits (< 1e-4), read by those libraries themselves, offline."""

import json

import pytest
import timm
import torch
from helpers import DOGS, QUICK

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.deploy.share import export_transformers
from mobilenets.tasks.face_embedding import FaceEmbeddingTask
from mobilenets.tasks.data.loading import load_task


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Dogs checkpoints (3 classes, 64 px, one step) at the widths the libraries share, and a tf_same one."""
    folder = tmp_path_factory.mktemp("share")
    runs = {"1.0": [], "1.25": [], "0.25": [], "0.5-tf": ["--model.init_args.backbone.padding", "tf_same"]}
    for name, extra in runs.items():
        alpha = name.split("-")[0]
        main(["fit", *DOGS[:2], "--data.init_args.root", str(folder / "dogs"), *DOGS[4:], *QUICK,
              "--model.init_args.backbone.alpha", alpha, "--model.init_args.resolution", "64", *extra,
              "--trainer.callbacks", "pytorch_lightning.callbacks.ModelCheckpoint", "--trainer.callbacks.dirpath",
              str(folder / name), "--trainer.callbacks.filename", "model", "--trainer.default_root_dir", str(folder)])
    return folder


def _inputs(task, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 64, 64, generator=generator)
    with torch.no_grad():
        return task.backbone.normalize(images), task(task.backbone.normalize(images))


@pytest.mark.parametrize("width, name", [("1.0", "mobilenetv1_100"), ("1.25", "mobilenetv1_125")])
def test_timm_loads_the_exported_file_and_gives_the_same_logits(trained, tmp_path, width, name, capsys):
    checkpoint = trained / width / "model.ckpt"
    out = tmp_path / "timm.safetensors"
    assert main(["weights", "export", str(checkpoint), "--to", "timm", str(out)]) == 0
    assert f"timm.create_model('{name}'" in capsys.readouterr().out
    task = load_task(checkpoint)
    model = timm.create_model(name, pretrained=True, num_classes=3,
                              pretrained_cfg_overlay={"file": str(out), "num_classes": 3}).eval()
    normalized, expected = _inputs(task)
    with torch.no_grad():
        assert (model(normalized) - expected).abs().max() < 1e-4
    assert model.pretrained_cfg["file"] == str(out)


@pytest.mark.parametrize("width", ["0.25", "0.5-tf"])
def test_transformers_loads_the_exported_folder_offline_and_gives_the_same_logits(trained, tmp_path, width,
                                                                                  monkeypatch):
    from transformers import AutoImageProcessor, MobileNetV1ForImageClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = trained / width / "model.ckpt"
    assert main(["weights", "export", str(checkpoint), "--to", "transformers", str(tmp_path / "hf")]) == 0
    task = load_task(checkpoint)
    model = MobileNetV1ForImageClassification.from_pretrained(tmp_path / "hf").eval()
    normalized, expected = _inputs(task)
    with torch.no_grad():
        assert (model(pixel_values=normalized).logits - expected).abs().max() < 1e-4
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(task.class_names)}
    assert config["tf_padding"] is (width == "0.5-tf") and config["depth_multiplier"] == float(width.split("-")[0])
    processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert processor.image_mean == pytest.approx(task.backbone.input_mean.flatten().tolist())


def test_face_attributes_keep_their_names_and_what_the_layouts_cannot_hold_is_refused(trained, tmp_path,
                                                                                        checkpoints):
    faces = checkpoints / "faces" / "model.ckpt"
    assert main(["weights", "export", str(faces), "--to", "transformers", str(tmp_path / "faces")]) == 0
    config = json.loads((tmp_path / "faces" / "config.json").read_text())
    assert list(config["id2label"].values()) == load_task(faces).attribute_names
    with pytest.raises(SystemExit, match=r"^mobilenets: ClassificationTask to timm: timm's MobileNet v1 comes at "
                                         r"alpha 1.0 and 1.25 with symmetric padding; this backbone has alpha 0.25"):
        main(["weights", "export", str(trained / "0.25" / "model.ckpt"), "--to", "timm", str(tmp_path / "x.pth")])
    assert not (tmp_path / "x.pth").exists()
    with pytest.raises(SettingError, match="a FaceEmbeddingTask is not a backbone with one linear head"):
        export_transformers(FaceEmbeddingTask(backbone=BackboneConfig(alpha=0.25), embedding_dim=8), tmp_path / "e")
