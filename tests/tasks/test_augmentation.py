"""The ``augmentation:`` block from YAML to the transforms (flip, crop scale and ratio, evaluation crop, policy,
erasing), detection's subset of it, and mixup / cutmix in classification."""

import pytest
import torch
from torch.nn import functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from mobilenets.backbone import BackboneConfig
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.base import TaskLoss
from mobilenets.tasks.classification import ClassificationTask


def _image(size: int = 32) -> tv_tensors.Image:
    """A square uint8 image whose left and right halves differ, so a flip shows."""
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[:, :, : size // 2] = 200
    image[1] = torch.arange(size, dtype=torch.uint8)[None] * 3
    return tv_tensors.Image(image)


def test_flip_follows_the_config():
    image = _image()
    whole = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))  # the crop is the whole square image
    expected = image.float() / 255
    torch.manual_seed(0)
    flipped = [not torch.allclose(Augmentation(**whole).train_transform(32, 0.25)(image), expected) for _ in range(40)]
    assert 5 < sum(flipped) < 35  # half the time
    unflipped = Augmentation(hflip=False, **whole).train_transform(32, 0.25)
    assert all(torch.allclose(unflipped(image), expected) for _ in range(40))


def test_crop_scale_and_ratio_bound_the_crop():
    # A crop of at least 90% of the area, aspect ratio exactly 1, resized to 16 px: the central pixel of a 64-px
    # image lands within a few pixels of the output's centre, whatever the draw.
    image = tv_tensors.Image(torch.zeros(3, 64, 64, dtype=torch.uint8))
    image[:, 30:34, 30:34] = 255
    transform = Augmentation(hflip=False, crop_scale=(0.9, 1.0), crop_ratio=(1.0, 1.0)).train_transform(16, 0.25)
    torch.manual_seed(0)
    for _ in range(20):
        out = transform(image)
        rows, cols = torch.nonzero(out[0] > 0.2, as_tuple=True)
        assert out.shape == (3, 16, 16) and 5 <= rows.float().mean() <= 10 and 5 <= cols.float().mean() <= 10


def test_evaluation_crop_fraction():
    image = _image(40)
    out = Augmentation(eval_crop_fraction=0.5).eval_transform(10, 0.875)(image)
    expected = v2.functional.center_crop(v2.functional.resize(image, 20, antialias=True), 10).float() / 255
    assert torch.allclose(out, expected)
    default = Augmentation().eval_transform(10, 1.0)(image)  # the data module's default: the whole image
    assert torch.allclose(default, v2.functional.resize(image, 10, antialias=True).float() / 255)


def test_policy_and_random_erasing():
    image = _image()
    whole = dict(hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    for policy, kind in (("trivialaugment", v2.TrivialAugmentWide), ("randaugment", v2.RandAugment),
                         ("autoaugment", v2.AutoAugment)):
        transform = Augmentation(policy=policy, **whole).train_transform(32, 0.25)
        assert any(isinstance(step, kind) for step in transform.transforms)
        torch.manual_seed(0)
        outputs = [transform(image) for _ in range(10)]
        assert any(not torch.allclose(out, image.float() / 255) for out in outputs)  # the policy changed some
    erased = Augmentation(random_erasing=1.0, **whole).train_transform(32, 0.25)(image)
    changed = ((erased - image.float() / 255).abs() > 1e-6).any(dim=0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert changed.sum() > 0 and changed.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


@pytest.mark.parametrize("fields, message", [
    ({"crop_scale": (0.5, 1.5)}, r"crop_scale must be two area shares 0 < low <= high <= 1, got \[0.5, 1.5\]"),
    ({"crop_ratio": (2.0, 1.0)}, r"crop_ratio must be two aspect ratios"),
    ({"eval_crop_fraction": 1.2}, r"eval_crop_fraction must be in \(0, 1\]"),
    ({"policy": "augmix"}, r"policy must be trivialaugment, randaugment, autoaugment or null, got 'augmix'"),
    ({"random_erasing": 2.0}, r"random_erasing is a probability"),
])
def test_bad_values_say_what_is_allowed(fields, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**fields)


def test_yaml_reaches_the_data_module_and_detection_takes_the_flip_only(tmp_path):
    from mobilenets.cli.lightning import MobileNetsCLI
    from mobilenets.tasks.detection import CocoDataModule

    config = tmp_path / "config.yaml"
    config.write_text("model: {class_path: ClassificationTask, init_args: {num_classes: 3}}\n"
                      "data:\n  class_path: DogsDataModule\n  init_args:\n    root: dogs\n"
                      "    augmentation: {hflip: false, crop_scale: [0.5, 1.0], policy: randaugment}\n")
    cli = MobileNetsCLI(["--config", str(config)], run=False)
    augmentation = cli.datamodule.hparams.augmentation
    assert augmentation == Augmentation(hflip=False, crop_scale=(0.5, 1.0), policy="randaugment")
    steps = cli.datamodule.train_transform().transforms
    assert not any(isinstance(step, v2.RandomHorizontalFlip) for step in steps) and steps[0].scale == (0.5, 1.0)

    unflipped = CocoDataModule(str(tmp_path / "coco"), augmentation=Augmentation(hflip=False)).train_transform()
    assert not any(isinstance(step, v2.RandomHorizontalFlip) for step in unflipped.transforms)
    assert any(isinstance(step, v2.RandomHorizontalFlip) for step in CocoDataModule("coco").train_transform().transforms)
    with pytest.raises(ValueError, match="of augmentation, only hflip applies to detection"):
        CocoDataModule("coco", augmentation={"policy": "trivialaugment"})


def test_mixup_and_cutmix_mix_the_task_s_own_training_batches():
    task = ClassificationTask(num_classes=4, backbone=BackboneConfig(alpha=0.25), resolution=32, mixup_alpha=0.4,
                              channels_last=False)
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    seen = []
    task.supervised_loss = lambda batch: seen.append(batch) or TaskLoss(torch.zeros(()), None)
    torch.manual_seed(0)
    task.training_step({"image": images, "label": labels}, 0)
    mixed = seen[0]
    one_hot = F.one_hot(labels, 4).float()
    weight = mixed["label"][0, 0].item()  # sample 0 (class 0) mixed with sample 5 (class 1): weight on class 0
    assert mixed["label"].shape == (6, 4) and torch.allclose(mixed["label"].sum(dim=1), torch.ones(6))
    assert torch.allclose(mixed["label"], weight * one_hot + (1 - weight) * one_hot.roll(1, 0))
    assert torch.allclose(mixed["image"], weight * images + (1 - weight) * images.roll(1, 0), atol=1e-6)
    del task.supervised_loss
    task.eval()  # no dropout: the same logits twice
    logits = task.model(mixed["image"])
    loss = task.supervised_loss(mixed).loss
    assert torch.allclose(loss, -(mixed["label"] * logits.log_softmax(dim=1)).sum(dim=1).mean(), atol=1e-6)
    assert ClassificationTask(num_classes=4, backbone=BackboneConfig(alpha=0.25)).batch_mix is None
    with pytest.raises(ValueError, match="mixup_alpha and cutmix_alpha must be >= 0"):
        ClassificationTask(num_classes=4, cutmix_alpha=-1.0)
