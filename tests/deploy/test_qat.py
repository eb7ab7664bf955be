"""Quantization-aware training: the body is fake-quantized (its output on an int8 grid), training still learns,
SSD's body is cut at the layer it reads, a task reading an undeclared layer is refused, and the fit's checkpoints
are ordinary float checkpoints that ``mobilenets export`` takes."""

import json
import types
from pathlib import Path

import pytest
import torch

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.deploy.qat import QuantizationAwareTraining, body_taps, float_state, prepare_body
from mobilenets.tasks.classification import ClassificationTask
from mobilenets.tasks.detection import DetectionTask
from mobilenets.tasks.data.loading import load_task

TINY = BackboneConfig(alpha=0.25)


def test_prepared_body_outputs_on_an_int8_grid():
    torch.manual_seed(0)
    task = ClassificationTask(num_classes=3, backbone=TINY, resolution=64, channels_last=False).eval()
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        float_output = task.model(images)
    task.backbone.features = prepare_body(task.backbone.features, 64)
    task.train()
    with torch.no_grad():
        task.model(images)  # the observers see one batch
        task.eval()
        body = task.backbone.features(images).flatten()
        assert 2 < body.unique().numel() <= 256  # one tensor, one scale: at most 256 levels
        assert not torch.equal(task.model(images), float_output)
    assert set(float_state(task.state_dict())) == set(ClassificationTask(
        num_classes=3, backbone=TINY, resolution=64).state_dict())


def test_training_learns_through_fake_quantization():
    torch.manual_seed(0)
    task = ClassificationTask(num_classes=2, backbone=TINY, resolution=64, channels_last=False)
    task.backbone.features = prepare_body(task.backbone.features, 64)
    images = torch.rand(8, 3, 64, 64)
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    images[labels == 1] += 0.3
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(task.model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_fit_start_leaves_the_ranges_to_the_training_data():
    """The callback's probe image (does the task run the body as one graph?) must not set any quantizer's range:
    a random image's ranges would clip the real activations for the first hundred steps."""
    task = ClassificationTask(num_classes=2, backbone=TINY, resolution=64)
    QuantizationAwareTraining().on_fit_start(types.SimpleNamespace(world_size=1), task)
    ranges = {key: value for key, value in task.backbone.features.state_dict().items() if key.endswith("min_val")}
    assert ranges and all(torch.isinf(value).all() for value in ranges.values())


def test_detection_body_is_cut_at_its_tap_and_trains():
    """SSD reads layers 11 and 13: two graphs, named after them; both maps on an int8 grid, the SSD loss falls,
    and after the fit the float layers hold the trained weights."""
    torch.manual_seed(0)
    task = DetectionTask(num_classes=3, backbone=TINY, resolution=96, extra_depths=(32, 16, 16, 8))
    float_maps = task.backbone.eval().forward_endpoints(torch.rand(2, 3, 96, 96), [11, 13])
    callback = QuantizationAwareTraining()
    callback.on_fit_start(types.SimpleNamespace(world_size=1), task)
    assert [name for name, _ in task.backbone.features.named_children()] == ["layer11", "layer13"]
    images = [torch.rand(3, 96, 96) for _ in range(4)]
    boxes = torch.tensor([[10.0, 10.0, 60.0, 70.0]])
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):  # fresh targets each step: SSD's transform resizes them in place
        loss = task.supervised_loss({"image": images, "target": [{"boxes": boxes, "labels": torch.tensor([1])}
                                                                    for _ in images]}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses  # about 15.6 -> 5.6
    with torch.no_grad():
        maps = task.backbone.eval().forward_endpoints(torch.rand(2, 3, 96, 96), [11, 13])
    assert [2 < m.unique().numel() <= 256 for m in maps.values()] == [True, True]  # each graph's output: int8
    assert [m.shape for m in maps.values()] == [m.shape for m in float_maps.values()]
    trained = task.backbone.features.layer13.state_dict()["layer13.pw.conv.weight"].clone()
    callback.on_fit_end(types.SimpleNamespace(), task)
    assert isinstance(task.backbone.features.layer13.pw.conv, torch.nn.Conv2d)  # the float layers are back
    assert torch.equal(task.backbone.features.layer13.pw.conv.weight, trained)


class _FirstLayer(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.features.layer0(images)


class _ReadsALayerDirectly(ClassificationTask):
    """Reads layer 0's map through the module, not through the backbone's ``forward_endpoints``."""

    def inference_network(self) -> torch.nn.Module:
        return _FirstLayer(self.backbone)


def test_the_taps_are_the_layers_a_task_asks_the_backbone_for():
    detector = DetectionTask(num_classes=3, backbone=TINY, resolution=96, extra_depths=(32, 16, 16, 8))
    assert body_taps(detector, 96) == (11,)  # SSD reads layers 11 and 13; the last is no tap
    assert body_taps(ClassificationTask(num_classes=2, backbone=TINY), 64) == ()
    assert "forward_endpoints" not in vars(detector.backbone)  # the recording is gone


def test_refuses_a_layer_read_past_the_endpoints_and_ddp():
    task = _ReadsALayerDirectly(num_classes=2, backbone=TINY, resolution=64)
    callback = QuantizationAwareTraining()
    with pytest.raises(SettingError, match=r"^QuantizationAwareTraining: _ReadsALayerDirectly reads body layers other "
                                           r"than the last without the backbone's forward_endpoints"):
        callback.on_fit_start(types.SimpleNamespace(world_size=1), task)
    assert isinstance(task.backbone.features.layer0, torch.nn.Module)  # the float body is back
    with pytest.raises(SettingError, match="runs in one process"):
        callback.on_fit_start(types.SimpleNamespace(world_size=2), ClassificationTask(num_classes=2, backbone=TINY))


def test_qat_fit_gives_an_ordinary_checkpoint_that_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["synth", "classification", "dogs", "--option", "num_classes=3", "--option", "train_per_class=4",
          "--option", "test_per_class=3"])
    common = ["--model", "ClassificationTask", "--model.backbone.alpha", "0.25",  # classes: the data's (setup)
              "--model.resolution", "48", "--data", "DogsDataModule", "--data.root", "dogs", "--data.batch_size", "4",
              "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]
    main(["fit", *common, "--trainer.default_root_dir", "float"])
    (start,) = Path("float").rglob("last.ckpt")
    main(["fit", *common, "--trainer.default_root_dir", "qat",
          "--trainer.callbacks+=mobilenets.deploy.qat.QuantizationAwareTraining",
          "--trainer.callbacks.checkpoint", str(start)])
    (tuned,) = Path("qat").rglob("last.ckpt")
    before = torch.load(start, weights_only=True)["state_dict"]
    after = torch.load(tuned, weights_only=True)["state_dict"]
    assert set(after) == set(before)  # no quantizer state: an ordinary checkpoint of the task
    weight = "model.backbone.features.layer1.pw.conv.weight"
    assert not torch.equal(after[weight], before[weight])  # it was fine-tuned from the float weights
    load_task(str(tuned))
    assert main(["export", str(tuned), "--output", "out", "--calibration-batches", "1", "--format", "onnx"]) == 0
    report = json.loads(Path("out/export_report.json").read_text())
    assert set(report["metrics"]) == {"pytorch", "onnx", "onnx_int8"}
