"""DistillationTask end to end through the CLI for each experiment config; teachers, cache, student export."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import logged_metrics
from tiny_task import Tiny

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.distill import DistillationTask, HintConfig
from mobilenets.tasks.classification import Classification, ClassificationTask, DogsDataModule
from mobilenets.tasks.detection import Detection
from mobilenets.tasks.distillation import SemiSupervisedDataModule, TeacherConfig, load_teacher
from mobilenets.tasks.face_attributes import FaceAttributesTask
from mobilenets.tasks.face_embedding import FaceEmbeddingTask

REPO = Path(__file__).resolve().parents[2]
def _student() -> Classification:
    return Classification(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=64)


def write_checkpoint(task: pl.LightningModule, path: Path) -> Path:
    """A checkpoint as Lightning writes one, without training (an untrained teacher teaches the mechanics)."""
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


@pytest.fixture(scope="module")
def dogs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dogs")
    datamodule = DogsDataModule(str(root), synthetic=True, resolution=64, batch_size=8, num_workers=0,
                                synthetic_options={"num_classes": 3, "train_per_class": 8, "test_per_class": 2})
    datamodule.prepare_data()
    return root


def test_teacher_from_a_checkpoint_is_frozen_and_keeps_its_own_preprocessing(tmp_path):
    task = ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=96)
    teacher = load_teacher(TeacherConfig(checkpoint=str(write_checkpoint(task, tmp_path / "t.ckpt"))),
                           default_task=ClassificationTask)
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    images = torch.rand(2, 3, 64, 64)  # loaded at another size: the teacher resizes to its own 96
    task.eval()
    expected = task(task.backbone.normalize(torch.nn.functional.interpolate(
        images, size=(96, 96), mode="bilinear", antialias=True, align_corners=False)))
    torch.testing.assert_close(teacher(images), expected)


def test_teacher_by_architecture_name_with_local_weights(tmp_path):
    import torchvision

    reference = torchvision.models.get_model("mobilenet_v2", weights=None, num_classes=3)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    teacher = load_teacher(TeacherConfig(arch="torchvision:mobilenet_v2", init_args={"num_classes": 3},
                                         weights=str(tmp_path / "w.pth"), resolution=64))
    images = torch.rand(1, 3, 64, 64)
    reference.eval()
    torch.testing.assert_close(teacher(images), reference(teacher.prepare(images)))
    with pytest.raises(ValueError, match="exactly one"):
        TeacherConfig(arch="torchvision:resnet18", checkpoint="x.ckpt")
    with pytest.raises(ValueError, match="torchvision:<name>"):
        load_teacher(TeacherConfig(arch="resnet18"))


def test_students_without_a_distillation_loss_and_mismatched_teachers_are_refused(tmp_path):
    teacher = write_checkpoint(ClassificationTask(num_classes=5, backbone=BackboneConfig(alpha=0.25),
                                                  resolution=64), tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match="cannot be distilled"):
        DistillationTask(Tiny(), TeacherConfig(checkpoint=str(teacher)))
    with pytest.raises(ValueError, match="same labels"):
        DistillationTask(_student(), TeacherConfig(checkpoint=str(teacher)), resolution=64)


def test_label_fraction_splits_training_images_into_labeled_and_unlabeled(dogs, tmp_path):
    full = DogsDataModule(str(dogs), resolution=64, num_workers=0)
    full.setup("fit")
    part = SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, num_workers=0), label_fraction=0.25)
    part.setup("fit")
    n = len(full.datasets["train"])
    assert len(part.datasets["train"]) == round(n * 0.25)
    assert len(part.datasets["train"]) + len(part.datasets["unlabeled"]) == n
    assert {r.label for r in part.datasets["unlabeled"].records} == {-1}
    assert "unlabeled" not in full.datasets
    folder = dogs / "Images"
    (tmp_path / "more.csv").write_text("file\n" + "\n".join(str(p) for p in sorted(folder.rglob("*.jpg"))[:5]))
    extra = SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, num_workers=0),
                                     unlabeled=str(tmp_path / "more.csv"))
    extra.setup("fit")
    assert len(extra.datasets["unlabeled"]) == 5
    from_folder = SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, num_workers=0),
                                           unlabeled=str(folder))
    from_folder.setup("fit")
    assert len(from_folder.datasets["unlabeled"]) == len(list(folder.rglob("*.jpg")))
    (tmp_path / "bad.csv").write_text("path\nx.jpg\n")
    with pytest.raises(ValueError, match="'file' column"):
        SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64),
                                 unlabeled=str(tmp_path / "bad.csv")).setup("fit")
    with pytest.raises(ValueError, match="label_fraction"):
        SemiSupervisedDataModule(DogsDataModule(str(dogs)), label_fraction=1.5)


def test_the_labels_only_baseline_takes_as_many_steps_as_the_distilled_student(dogs, tmp_path):
    """``match_distillation_steps``: an epoch on the labeled images alone loops over them for as many batches as a
    distiller's epoch takes (the longer, unlabeled loader); without it, the baseline takes one batch an epoch."""
    from mobilenets.tasks.face_embedding import FaceIdentityDataModule

    def dogs_data(**settings):
        return SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, num_workers=0, batch_size=4),
                                        label_fraction=0.25, **settings)

    baseline = dogs_data(match_distillation_steps=True)
    baseline.setup("fit")
    labeled, unlabeled = len(baseline.datasets["train"]), len(baseline.datasets["unlabeled"])
    batches = [batch["index"].tolist() for batch in baseline.train_dataloader()]
    assert (labeled, unlabeled) == (6, 16) and len(batches) == 16 // 4
    drawn = [index for batch in batches for index in batch]
    assert sorted(drawn[:6]) == sorted(drawn[6:12]) == list(range(6))  # whole passes over the labeled images
    distilled = dogs_data()
    distilled.setup("fit")
    distilled.enable_distillation()
    assert sum(1 for _ in distilled.train_dataloader()) == len(batches)
    plain = dogs_data()
    plain.setup("fit")
    assert sum(1 for _ in plain.train_dataloader()) == 1

    faces = FaceIdentityDataModule(str(tmp_path / "faces"), synthetic=True, resolution=32, num_workers=0, batch_size=4,
                                   images_per_identity=2,
                                   synthetic_options=dict(train_identities=4, train_images=4, test_identities=20,
                                                          test_images=2, pairs_per_fold=1))
    faces = SemiSupervisedDataModule(faces, label_fraction=0.25, match_distillation_steps=True)
    faces.prepare_data()
    faces.setup("fit")  # P x K batches: the identity sampler loops as well
    assert (len(faces.datasets["train"]), len(faces.datasets["unlabeled"])) == (4, 12)
    assert sum(1 for _ in faces.train_dataloader()) == 12 // 4


def test_teacher_cache_fills_once_and_is_reused(dogs, tmp_path):
    teacher = write_checkpoint(ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25),
                                                  resolution=64), tmp_path / "t.ckpt")
    task = DistillationTask(_student(), TeacherConfig(checkpoint=str(teacher)), resolution=64,
                            teacher_cache=str(tmp_path / "cache"))
    calls = []
    task.teacher.register_forward_hook(lambda *args: calls.append(1))
    plain = DogsDataModule(str(dogs), resolution=64, batch_size=8, num_workers=0)
    with pytest.raises(SettingError, match="teacher_cache needs the training images without augmentation"):
        pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).fit(task, plain)
    datamodule = SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, batch_size=8, num_workers=0),
                                          label_fraction=0.25)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule)
    assert all(cache.complete for cache in task.caches.values()) and set(task.caches) == {"labeled", "unlabeled"}
    # One probe per cache sizes its files before training; epoch 1 runs the teacher on every batch; later epochs
    # read the cache (the labeled loader cycles within epoch 1, so its second pass is already cached).
    first_epoch = len(calls)
    assert len(task.caches) < first_epoch <= 2 * trainer.num_training_batches + len(task.caches)
    assert trainer.current_epoch == 3 and len(calls) == first_epoch
    rows = task.caches["unlabeled"].outputs
    assert rows.shape == (len(datamodule.datasets["unlabeled"]), 3) and torch.isfinite(torch.from_numpy(rows[:])).all()


@pytest.mark.parametrize("name, teacher", [
    ("dogs", lambda: ClassificationTask(num_classes=6, backbone=BackboneConfig(alpha=0.25), resolution=160)),
    ("face_attributes", lambda: FaceAttributesTask(num_attributes=10, backbone=BackboneConfig(alpha=0.25),
                                                   resolution=160)),
    ("face_embedding", lambda: FaceEmbeddingTask(embedding_dim=256, backbone=BackboneConfig(alpha=0.25),
                                                 resolution=128)),
])
def test_experiment_configs_fit_and_test_through_the_cli(name, teacher, tmp_path, monkeypatch):
    """``mobilenets fit --config configs/distill/<name>.yaml`` (few batches, a stand-in teacher), then the
    student alone, exported, is tested with its own task's metrics."""
    monkeypatch.chdir(tmp_path)
    checkpoint = write_checkpoint(teacher(), tmp_path / "teacher.ckpt")
    config = str(REPO / "configs" / "distill" / f"{name}.yaml")
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
              "--trainer.enable_progress_bar", "false", "--data.init_args.num_workers", "0"]
    main(["fit", "--config", config, "--model.init_args.teacher.checkpoint", str(checkpoint), *limits])
    rows = logged_metrics(tmp_path / "runs")
    monitor = {"dogs": "val/top1", "face_attributes": "val/mAP", "face_embedding": "val/accuracy"}[name]
    assert any(row.get(monitor) for row in rows), rows
    saved = sorted((tmp_path / "runs").rglob("*.ckpt"))[-1]
    assert not any(k.startswith("teacher.") for k in torch.load(saved, weights_only=False)["state_dict"])
    main(["student", str(saved), str(tmp_path / "student.ckpt")])
    student_config = str(REPO / "configs" / "distill" / f"{name}_labels_only.yaml")
    main(["test", "--config", student_config, "--ckpt_path", str(tmp_path / "student.ckpt"),
          "--trainer.enable_progress_bar", "false", "--data.init_args.num_workers", "0",
          "--trainer.default_root_dir", str(tmp_path / "test_runs")])
    assert any(row.get(monitor.replace("val/", "test/")) for row in logged_metrics(tmp_path / "test_runs"))
    if name == "dogs":  # the distillation checkpoint exports its student, scored on the student's view of the data
        main(["export", str(saved), "--output", str(tmp_path / "export"), "--no-int8"])
        report = json.loads((tmp_path / "export" / "export_report.json").read_text())
        assert report["task"].endswith("ClassificationTask") and report["resolution"] == 128
        assert report["metrics"]["onnx"] == report["metrics"]["pytorch"]


def test_hint_trains_an_adapter_from_the_teachers_map(dogs, tmp_path):
    teacher = write_checkpoint(ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.5),
                                                  resolution=64), tmp_path / "t.ckpt")
    task = DistillationTask(_student(), TeacherConfig(checkpoint=str(teacher)), resolution=64,
                            hint=HintConfig(student_layer=11, teacher_module="model.backbone.features.layer11"))
    adapter = task.distill_modules["hint"].adapter
    assert (adapter.in_channels, adapter.out_channels) == (128, 256)  # 0.25 and 0.5 widths of layer 11
    before = adapter.weight.detach().clone()
    datamodule = DogsDataModule(str(dogs), resolution=64, batch_size=8, num_workers=0)  # every image labeled
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/hint_loss"])
    assert torch.isfinite(trainer.callback_metrics["train/own_loss"])
    assert not torch.equal(before, adapter.weight)
    with pytest.raises(ValueError, match="hint"):
        DistillationTask(_student(), TeacherConfig(checkpoint=str(teacher)), resolution=64, teacher_cache="c",
                         hint=HintConfig())


def _ssd(alpha: float, resolution: int) -> Detection:
    return Detection(num_classes=4, backbone=BackboneConfig(alpha=alpha), resolution=resolution,
                         extra_depths=[64, 32, 32, 16])


def test_detection_student_learns_from_an_ssd_teacher_on_labeled_and_unlabeled_images(tmp_path):
    from mobilenets.tasks.detection import CocoDataModule

    teacher = write_checkpoint(_ssd(0.5, 128), tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match="share the input size"):
        DistillationTask(_ssd(0.25, 160), TeacherConfig(checkpoint=str(teacher)), resolution=128)
    task = DistillationTask(_ssd(0.25, 128), TeacherConfig(checkpoint=str(teacher)), resolution=128)
    coco = CocoDataModule(str(tmp_path / "coco"), synthetic=True, resolution=128, batch_size=4, num_workers=0,
                          synthetic_options={"train_images": 8, "val_images": 4, "image_size": 96})
    datamodule = SemiSupervisedDataModule(coco, label_fraction=0.5)
    before = [p.detach().clone() for p in task.student.parameters()]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(task, datamodule)
    assert len(datamodule.datasets["train"]) == 4 and len(datamodule.datasets["unlabeled"]) == 4
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/distill_loss"]) and torch.isfinite(metrics["train/own_loss"])
    assert "val/mAP" in metrics  # the student's own COCO evaluation
    assert any(not torch.equal(a, b) for a, b in zip(before, task.student.parameters()))



def test_under_ddp_only_the_student_is_synchronised(dogs, tmp_path):
    """Lightning's DDP strategy (one CPU process, gloo) wraps the distiller; DDP synchronises parameters that
    take gradients, and the frozen teacher has none, so its weights come back untouched."""
    from torch.nn.parallel import DistributedDataParallel

    teacher = write_checkpoint(ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25),
                                                  resolution=64), tmp_path / "t.ckpt")
    task = DistillationTask(_student(), TeacherConfig(checkpoint=str(teacher)), resolution=64)
    teacher_before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    wrapped = []

    class SeeWrapper(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            wrapped.append(trainer.strategy.model)

    datamodule = SemiSupervisedDataModule(DogsDataModule(str(dogs), resolution=64, batch_size=4, num_workers=0),
                                          label_fraction=0.25)
    trainer = pl.Trainer(accelerator="cpu", devices=1, strategy="ddp", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[SeeWrapper()])
    trainer.fit(task, datamodule)
    assert isinstance(wrapped[0], DistributedDataParallel)
    synced = {id(p) for p in wrapped[0].parameters() if p.requires_grad}
    assert synced and not synced & {id(p) for p in task.teacher.parameters()}
    assert all(torch.equal(teacher_before[k], v) for k, v in task.teacher.state_dict().items())


def test_data_recorded_before_the_semi_supervised_module_loads_into_one(dogs, tmp_path):
    """Checkpoints written before distillation's data settings moved to ``SemiSupervisedDataModule`` record them
    on the task's data module: such data loads wrapped (export rebuilds it so), and settings at their defaults are
    dropped."""
    from mobilenets.tasks.data.loading import load_datamodule

    recorded = {"_class_path": "mobilenets.tasks.classification.DogsDataModule", "root": str(dogs), "resolution": 64,
                "num_workers": 0, "unlabeled": None, "match_distillation_steps": False}
    torch.save({"datamodule_hyper_parameters": {**recorded, "label_fraction": 0.25}}, tmp_path / "taught.ckpt")
    torch.save({"datamodule_hyper_parameters": {**recorded, "label_fraction": 1.0}}, tmp_path / "plain.ckpt")
    taught = load_datamodule(tmp_path / "taught.ckpt", batch_size=4)
    assert isinstance(taught, SemiSupervisedDataModule) and taught.hparams.label_fraction == 0.25
    taught.setup("fit")
    assert (len(taught.datasets["train"]), len(taught.datasets["unlabeled"]), taught.batch_size) == (6, 16, 4)
    plain = load_datamodule(tmp_path / "plain.ckpt")
    assert type(plain) is DogsDataModule and "label_fraction" not in plain.hparams
    current = SemiSupervisedDataModule(DogsDataModule(str(dogs), num_workers=0), label_fraction=0.25, resolution=64)
    torch.save({"datamodule_hyper_parameters": {"_class_path": "mobilenets.tasks.distillation.SemiSupervisedDataModule",
                                                **current.hparams}}, tmp_path / "current.ckpt")
    reloaded = load_datamodule(tmp_path / "current.ckpt")  # as written now: itself, not wrapped again
    assert type(reloaded.datamodule) is DogsDataModule and reloaded.hparams.label_fraction == 0.25
    member = {"class_path": "DogsDataModule", "init_args": {key: value for key, value in recorded.items()
                                                            if key not in ("_class_path", "resolution")}}
    torch.save({"datamodule_hyper_parameters": {  # a multi-task data module's member recorded them too
        "_class_path": "mobilenets.tasks.multitask.MultiTaskDataModule", "resolution": 64,
        "datamodules": {"dogs": {**member, "init_args": {**member["init_args"], "label_fraction": 0.5}}}}},
        tmp_path / "multitask.ckpt")
    (head,) = load_datamodule(tmp_path / "multitask.ckpt").datamodules.values()
    assert isinstance(head, SemiSupervisedDataModule) and head.hparams.label_fraction == 0.5
    assert head.datamodule.hparams.resolution == 64


def test_the_input_size_and_shared_settings_are_the_wrappers(dogs):
    """The wrapped data module takes the wrapper's input size (linked to the model's) and its root, batch and
    workers where given; the wrapper rebuilds at another size (as a multi-task data module rebuilds its members)."""
    data = SemiSupervisedDataModule(DogsDataModule(str(dogs)), resolution=64, batch_size=4, num_workers=0)
    wrapped = data.datamodule.hparams
    assert (wrapped.resolution, wrapped.batch_size, wrapped.num_workers, data.batch_size) == (64, 4, 0, 4)
    again = data.rebuilt(resolution=96)
    assert again.datamodule.hparams.resolution == 96 and again.datamodule.hparams.batch_size == 4
    assert data.class_names == again.class_names  # what the task reads of its data is the wrapped module's
