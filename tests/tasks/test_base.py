"""BaseTask: the paper's optimizer, weight-decay groups, freezing, schedules, normalisation."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tiny_task import Tiny, TinyDataModule, TinyTask

from mobilenets.backbone import BackboneConfig, MobileNetV1, save_backbone
from mobilenets.tasks.optim import parameter_groups

SMALL = BackboneConfig(alpha=0.25)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = dict(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    return pl.Trainer(**{**defaults, **kwargs})


def test_weight_decay_groups():
    task = TinyTask(backbone=SMALL, weight_decay=1e-4, lr=0.1, backbone_lr_mult=0.1)
    groups = {g["name"]: g for g in parameter_groups(task, task.backbone, 0.1, 1e-4, 0.1)}
    assert set(groups) == {"backbone/decay", "backbone/no_decay", "head/decay", "head/no_decay"}
    model = task.model
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert id(model.backbone.features.layer3.dw.conv.weight) in ids["backbone/no_decay"]  # depthwise filter
    assert id(model.backbone.features.layer3.dw.bn.weight) in ids["backbone/no_decay"]
    assert id(model.backbone.features.layer3.pw.conv.weight) in ids["backbone/decay"]
    assert id(model.backbone.features.layer0.conv.weight) in ids["backbone/decay"]
    assert id(model.head.weight) in ids["head/decay"] and id(model.head.bias) in ids["head/no_decay"]
    assert groups["backbone/decay"]["lr"] == pytest.approx(0.01) and groups["head/decay"]["lr"] == 0.1
    assert groups["backbone/no_decay"]["weight_decay"] == 0.0 and groups["head/decay"]["weight_decay"] == 1e-4
    assert sum(len(g["params"]) for g in groups.values()) == len(list(task.parameters()))


def test_paper_rmsprop_and_cosine_schedule(tmp_path):
    task = TinyTask(backbone=SMALL)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(task, TinyDataModule())
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert (optimizer.defaults["alpha"], optimizer.defaults["momentum"], optimizer.defaults["eps"]) == (0.9, 0.9, 1.0)
    scheduler = trainer.lr_scheduler_configs[0]
    assert isinstance(scheduler.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert scheduler.scheduler.T_max == 6 and scheduler.interval == "step"  # 3 epochs x 2 batches


def test_any_torch_optimizer_and_scheduler(tmp_path):
    task = TinyTask(backbone=SMALL, optimizer="torch.optim.SGD", optimizer_kwargs={"momentum": 0.5},
                    lr_scheduler="StepLR", lr_scheduler_kwargs={"step_size": 1}, lr_scheduler_interval="epoch")
    trainer = _trainer(tmp_path)
    trainer.fit(task, TinyDataModule())
    assert isinstance(trainer.optimizers[0], torch.optim.SGD) and trainer.optimizers[0].defaults["momentum"] == 0.5
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)
    with pytest.raises(ValueError, match="'Nadamax' is not in torch.optim"):
        Tiny(backbone=SMALL, optimizer="Nadamax").build_optimizers(steps=10, epochs=1)


def test_training_lowers_the_loss(tmp_path):
    pl.seed_everything(0)
    task = TinyTask(backbone=SMALL, lr=0.1, lr_scheduler=None)  # the paper's RMSprop (eps=1.0) wants a large lr
    data = TinyDataModule(size=32)
    batch = next(iter(data.train_dataloader()))
    task.eval()

    def loss() -> float:
        with torch.no_grad():
            normalized = task.on_after_batch_transfer(dict(batch), 0)
            return torch.nn.functional.cross_entropy(task.model(normalized["image"]), batch["label"]).item()

    before = loss()
    _trainer(tmp_path, max_epochs=10).fit(task, data)
    task.eval()
    assert loss() < 0.5 * before


def test_frozen_backbone_stays_fixed(tmp_path):
    task = TinyTask(backbone=SMALL, freeze_backbone=True, lr_scheduler=None)
    backbone_before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    head_before = task.model.head.weight.clone()
    _trainer(tmp_path).fit(task, TinyDataModule())
    after = task.backbone.state_dict()
    assert all(torch.equal(backbone_before[k], after[k]) for k in backbone_before)  # BN statistics included
    assert not torch.equal(head_before, task.model.head.weight)
    assert [g["name"] for g in parameter_groups(task, task.backbone, 0.1, 0.0)] == ["head/decay", "head/no_decay"]


def test_trainable_backbone_layers_trains_only_the_last_ones(tmp_path):
    task = TinyTask(backbone=SMALL, trainable_backbone_layers=3, lr_scheduler=None)
    layers = list(task.backbone.features.children())
    assert len(layers) == 14  # the paper's conv 0 and 13 depthwise-separable layers
    before = [{k: v.clone() for k, v in layer.state_dict().items()} for layer in layers]
    _trainer(tmp_path).fit(task, TinyDataModule())
    changed = [any(not torch.equal(b[k], v) for k, v in layer.state_dict().items()) for b, layer in zip(before, layers)]
    assert changed == [False] * 11 + [True] * 3  # weights and BN statistics of the first 11 stay fixed
    assert all(not p.requires_grad for layer in layers[:11] for p in layer.parameters())
    task.train()
    assert [layer.training for layer in layers] == [False] * 11 + [True] * 3
    assert TinyTask(backbone=SMALL, trainable_backbone_layers=14)._frozen == []
    with pytest.raises(ValueError, match="trainable_backbone_layers must be between 0 and 14"):
        TinyTask(backbone=SMALL, trainable_backbone_layers=15)


def test_pretrained_backbone_and_its_normalisation(tmp_path):
    source = MobileNetV1(alpha=0.25, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    save_backbone(source, tmp_path / "b.pth")
    task = TinyTask(backbone=BackboneConfig(alpha=0.25, pretrained=str(tmp_path / "b.pth")))
    assert torch.equal(task.backbone.features.layer5.pw.conv.weight, source.features.layer5.pw.conv.weight)
    batch = task.on_after_batch_transfer({"image": torch.ones(1, 3, 32, 32)}, 0)
    assert torch.allclose(batch["image"], torch.ones(1, 3, 32, 32))  # (1 - 0.5) / 0.5


def test_a_task_loads_without_its_pretrained_file(tmp_path):
    """The backbone's weights are in the checkpoint; the file it started from may be gone by then."""
    import pytorch_lightning as pl

    from mobilenets.tasks.data.loading import load_task

    save_backbone(MobileNetV1(alpha=0.25), tmp_path / "b.pth")
    task = TinyTask(backbone=BackboneConfig(alpha=0.25, pretrained=str(tmp_path / "b.pth")))
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": pl.__version__}, tmp_path / "task.ckpt")
    (tmp_path / "b.pth").unlink()
    loaded = load_task(tmp_path / "task.ckpt", TinyTask)
    assert torch.equal(loaded.backbone.features.layer5.pw.conv.weight, task.backbone.features.layer5.pw.conv.weight)


def test_bad_settings():
    with pytest.raises(ValueError, match="resolution must be an integer >= 32"):
        TinyTask(backbone=SMALL, resolution=16)
    with pytest.raises(ValueError, match="lr_scheduler_interval must be 'step' or 'epoch'"):
        TinyTask(backbone=SMALL, lr_scheduler_interval="batch")


def test_channels_last_layout():
    task = TinyTask(backbone=SMALL)
    weight = task.backbone.features.layer1.pw.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    batch = task.on_after_batch_transfer({"image": torch.rand(2, 3, 32, 32)}, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    plain = TinyTask(backbone=SMALL, channels_last=False)
    assert plain.on_after_batch_transfer({"image": torch.rand(2, 3, 32, 32)}, 0)["image"].is_contiguous()


def test_a_cli_checkpoint_loads_without_the_files_its_fit_started_from(tmp_path, monkeypatch):
    """A fit through the command records its settings as the config's mappings; loading its checkpoint for export
    or serving reads neither ``backbone.pretrained`` nor a distiller's student's, so both may be gone (and a
    relative path may name nothing from another folder)."""
    from helpers import DOGS, QUICK

    from mobilenets.cli import main
    from mobilenets.tasks.data.loading import load_task

    monkeypatch.chdir(tmp_path)
    save_backbone(MobileNetV1(alpha=0.25), "b.pth")
    main(["fit", *DOGS, *QUICK, "--model.init_args.backbone.pretrained", "b.pth", "--trainer.default_root_dir", "a"])
    student = {"class_path": "mobilenets.tasks.classification.Classification",
               "init_args": {"backbone": {"alpha": 0.25, "pretrained": "b.pth"}, "resolution": 48}}
    teacher = str(next(Path("a").rglob("*.ckpt")))
    main(["fit", *DOGS, *QUICK[4:], "--model", "DistillationTask", "--model.student", json.dumps(student),
          "--model.teacher.checkpoint", teacher, "--model.resolution", "48", "--trainer.default_root_dir", "d"])
    Path("b.pth").unlink()
    assert load_task(teacher).backbone_config.pretrained is None
    distilled = load_task(next(Path("d").rglob("*.ckpt")))
    assert distilled.student.backbone_config.pretrained is None
