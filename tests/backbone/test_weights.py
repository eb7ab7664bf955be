"""Weights: timm conversion gives timm's logits; our checkpoints round-trip; task checkpoints transfer."""

import pytest
import torch

from mobilenets.backbone import MobileNetV1, convert_timm_state_dict, load_backbone, load_pretrained, save_backbone
from mobilenets.backbone.weights import read_weights

timm = pytest.importorskip("timm")


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics too, so a mis-mapped BN cannot hide behind default ones."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name,alpha", [("mobilenetv1_100", 1.0), ("mobilenetv1_125", 1.25)])
def test_timm_conversion_gives_the_same_logits(name, alpha, tmp_path):
    reference = _randomised(timm.create_model(name, pretrained=False))
    path = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), path)
    ours = MobileNetV1(alpha=alpha).eval()
    load_pretrained(ours, path)
    images = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        expected = reference((images - 0.5) / 0.5)
        actual = ours(ours.normalize(images))  # timm's preprocessing (mean/std 0.5) came with the weights
    assert (actual - expected).abs().max() < 1e-4


def test_timm_safetensors(tmp_path):
    from safetensors.torch import save_file

    reference = _randomised(timm.create_model("mobilenetv1_100", pretrained=False, num_classes=5))
    save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    ours = MobileNetV1(num_classes=5).eval()
    load_pretrained(ours, tmp_path / "model.safetensors")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-4)


def test_timm_conversion_rejects_other_models():
    state_dict = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    with pytest.raises(ValueError, match="not a timm MobileNet v1 state dict"):
        convert_timm_state_dict(state_dict)


def test_save_and_load_backbone_round_trip(tmp_path):
    model = _randomised(MobileNetV1(alpha=0.5, num_classes=3, shallow=True, activation="relu"))
    save_backbone(model, tmp_path / "w" / "backbone.pth")
    loaded = load_backbone(tmp_path / "w" / "backbone.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    assert loaded.config == model.config
    assert torch.equal(loaded(x), model(x))
    assert not list((tmp_path / "w").glob("*.tmp"))


def test_transfer_from_a_task_checkpoint_ignores_the_old_head(tmp_path):
    source = _randomised(MobileNetV1(alpha=0.25, num_classes=120))
    task_state = {f"model.backbone.{k}": v for k, v in source.state_dict().items()}
    task_state["model.head.weight"] = torch.zeros(3)
    torch.save({"state_dict": task_state, "pytorch-lightning_version": "2.6.0"}, tmp_path / "task.ckpt")
    target = MobileNetV1(alpha=0.25, num_classes=10).eval()
    load_pretrained(target, tmp_path / "task.ckpt")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(target.forward_features(x), source.forward_features(x))
    assert target.classifier.weight.shape == (10, 256)


def test_shape_mismatch_names_file_and_keys(tmp_path):
    save_backbone(MobileNetV1(alpha=0.5), tmp_path / "half.pth")
    expected = r"(?s)half\.pth does not fit this backbone.*features\.layer0\.bn\.bias: file \(16,\) vs model \(8,\)"
    with pytest.raises(ValueError, match=expected + r".*and \d+ more"):
        load_pretrained(MobileNetV1(alpha=0.25), tmp_path / "half.pth")
    save_backbone(MobileNetV1(alpha=0.25), tmp_path / "deep.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: \['features\.layer10"):
        load_pretrained(MobileNetV1(alpha=0.25, shallow=True), tmp_path / "deep.pth")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="must be a local file path"):
        read_weights(tmp_path / "missing.pth")
    torch.save({"some": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth: unrecognised weights"):
        read_weights(tmp_path / "odd.pth")
    torch.save({"state_dict": {"model.head.weight": torch.zeros(1)}}, tmp_path / "headonly.ckpt")
    with pytest.raises(ValueError, match="has no 'backbone.' weights"):
        read_weights(tmp_path / "headonly.ckpt")
    torch.save(MobileNetV1(alpha=0.25).state_dict(), tmp_path / "plain.pth")  # weights, but of which model?
    with pytest.raises(ValueError, match="not a file written by save_backbone"):
        load_backbone(tmp_path / "plain.pth")


def test_backbone_config_builds_pretrained(tmp_path):
    from mobilenets.backbone import BackboneConfig

    source = _randomised(MobileNetV1(alpha=0.25))
    save_backbone(source, tmp_path / "b.pth")
    built = BackboneConfig(alpha=0.25, pretrained=str(tmp_path / "b.pth")).build(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(built.forward_features(x), source.forward_features(x))
