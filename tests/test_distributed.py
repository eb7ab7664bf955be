"""Every task under Lightning's DDP with 2 CPU processes (gloo): the evaluation equals a 1-process run on the
same weights and data (each sample counted once), and one-time work (synthetic data, S2 partition) is done by
rank 0 alone while the other waits."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import LAUNCH_ENV, logged_metrics

from mobilenets.cli import main
from mobilenets.tasks.classification import DogsDataModule
from mobilenets.tasks.distillation import SemiSupervisedDataModule

COMMON = ["--model.backbone.alpha", "0.25", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--seed_everything", "0"]

#: Per task: CLI arguments of a tiny model on tiny synthetic data whose evaluation splits do not divide evenly
#: between 2 ranks (so Lightning's default sampler would repeat samples).
TASKS = {
    "classification": ["--model", "ClassificationTask", "--model.num_classes", "3", "--model.resolution", "48",
                       "--data", "DogsDataModule", "--data.batch_size", "4", "--data.val_fraction", "0.25",
                       "--data.synthetic_options", "{num_classes: 3, train_per_class: 7, test_per_class: 2}"],
    "face_attributes": ["--model", "FaceAttributesTask", "--model.num_attributes", "10", "--model.resolution", "48",
                        "--data", "CelebADataModule", "--data.batch_size", "4",
                        "--data.synthetic_options", "{num_images: 45}"],
    "face_embedding": ["--model", "FaceEmbeddingTask", "--model.embedding_dim", "16", "--model.resolution", "48",
                       "--data", "FaceIdentityDataModule", "--data.batch_size", "4",
                       "--data.synthetic_options", "{train_identities: 4, train_images: 4, test_identities: 5, "
                       "test_images: 3, folds: 2, pairs_per_fold: 5}"],
    "geolocation": ["--model", "GeolocationTask", "--model.num_cells", "NUM_CELLS", "--model.resolution", "48",
                    "--data", "GeoDataModule", "--data.batch_size", "8", "--data.t1", "30", "--data.t2", "3",
                    "--data.max_level", "8", "--data.synthetic_options", "{num_images: 130, num_regions: 4}"],
    "detection": ["--model", "DetectionTask", "--model.num_classes", "4", "--model.resolution", "96",
                  "--model.extra_depths", "[32, 16, 16, 8]", "--data", "CocoDataModule", "--data.batch_size", "2",
                  "--data.synthetic_options", "{train_images: 6, val_images: 5, image_size: 96}"],
}


def test_evaluation_splits_are_shared_out_without_repeats(tmp_path):
    data = DogsDataModule(str(tmp_path / "dogs"), synthetic=True, resolution=32, num_workers=0, val_fraction=0.25,
                          synthetic_options=dict(num_classes=3, train_per_class=7, test_per_class=1))
    data.prepare_data()
    data.setup("fit")
    assert len(data.datasets["val"]) == 5
    seen = []
    for rank in range(2):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        seen.append([int(i) for batch in data.val_dataloader() for i in batch["index"]])
    assert sorted(seen[0] + seen[1]) == list(range(5)) and [len(s) for s in seen] == [3, 2]
    data.trainer = SimpleNamespace(world_size=1, global_rank=0)
    assert isinstance(data.val_dataloader().sampler, torch.utils.data.SequentialSampler)


def _num_cells(root: Path) -> str:
    from mobilenets.tasks.geolocation import GeoDataModule

    data = GeoDataModule(str(root), synthetic=True, t1=30, t2=3, max_level=8, resolution=48, num_workers=0,
                         synthetic_options={"num_images": 130, "num_regions": 4})
    data.prepare_data()
    data.setup("validate")
    return str(data.num_cells[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASKS))
def test_two_processes_evaluate_exactly_like_one(name, tmp_path, monkeypatch):
    """Fit briefly in one process; validate the checkpoint in one process, then with 2 DDP processes on a fresh
    data root that rank 0 alone writes (the synthetic writers are seeded, so it is the same data)."""
    monkeypatch.chdir(tmp_path)
    args = [*TASKS[name], *COMMON]
    if name == "geolocation":
        args[args.index("NUM_CELLS")] = _num_cells(tmp_path / "data_one")
    one = [*args, "--data.root", "data_one", "--data.synthetic", "true"]
    main(["fit", *one, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", "fit"])
    (checkpoint,) = Path("fit").rglob("epoch=*.ckpt")  # no validation: Lightning's own checkpoint
    main(["validate", *one, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", "one"])
    two = [*args, "--data.root", "data_two", "--data.synthetic", "true", "--ckpt_path", str(checkpoint),
           "--trainer.default_root_dir", "two", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp"]
    result = subprocess.run([sys.executable, "-m", "mobilenets.cli", "validate", *two], capture_output=True,
                            text=True, timeout=300, env=LAUNCH_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("[mobilenets] writing synthetic data") == 1, result.stderr[-3000:]
    if name == "geolocation":
        assert result.stderr.count("[mobilenets] partition of") == 1
    (single,) = [row for row in logged_metrics(Path("one")) if any(k.startswith("val/") for k in row)]
    (double,) = [row for row in logged_metrics(Path("two")) if any(k.startswith("val/") for k in row)]
    metrics = {key for key, value in single.items() if key.startswith("val/") and key != "val/loss" and value}
    assert metrics and metrics == {k for k, v in double.items() if k.startswith("val/") and k != "val/loss" and v}
    assert {k: float(single[k]) for k in metrics} == pytest.approx({k: float(double[k]) for k in metrics}, abs=1e-6)


@pytest.mark.slow
def test_teacher_cache_filled_by_two_processes_holds_the_teachers_outputs(tmp_path, monkeypatch):
    """Rank 0 alone creates the cache files; both ranks then fill their own samples' rows, and every row holds
    exactly what the teacher gives for that sample."""
    import numpy as np
    import pytorch_lightning as pl

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.classification import ClassificationTask
    from mobilenets.tasks.distillation import TeacherConfig, load_teacher

    monkeypatch.chdir(tmp_path)
    teacher_task = ClassificationTask(num_classes=6, backbone=BackboneConfig(alpha=0.25), resolution=160)
    torch.save({"state_dict": teacher_task.state_dict(), "hyper_parameters": dict(teacher_task.hparams),
                "pytorch-lightning_version": pl.__version__}, "teacher.ckpt")
    config = str(Path(__file__).resolve().parents[1] / "configs" / "distill" / "dogs.yaml")
    options = "{num_classes: 6, train_per_class: 5, test_per_class: 1}"
    result = subprocess.run(
        [sys.executable, "-m", "mobilenets.cli", "fit", "--config", config,
         "--model.init_args.teacher.checkpoint", "teacher.ckpt", "--model.init_args.teacher_cache", "cache",
         "--data.init_args.root", "data", "--data.init_args.datamodule.init_args.synthetic_options", options,
         "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1",
         "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", "run", "--trainer.accelerator", "cpu",
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false"],
        capture_output=True, text=True, timeout=300, env=LAUNCH_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    data = SemiSupervisedDataModule(DogsDataModule("data", resolution=160, num_workers=0, val_fraction=0.15),
                                    label_fraction=0.1)
    data.setup("fit")
    data.enable_distillation(deterministic=True)
    teacher = load_teacher(TeacherConfig(checkpoint="teacher.ckpt"), ClassificationTask)
    for source, split in (("labeled", "train"), ("unlabeled", "unlabeled")):
        dataset = data.datasets[split]
        outputs = np.load(Path("cache") / source / "outputs.npy")
        assert np.load(Path("cache") / source / "filled.npy").all() and len(outputs) == len(dataset)
        with torch.no_grad():
            expected = torch.cat([teacher(dataset[i]["image"][None]) for i in range(len(dataset))])
        assert np.allclose(outputs, expected.numpy(), atol=1e-5)


@pytest.mark.slow
def test_two_processes_train_from_shards_with_equal_shares(tmp_path, monkeypatch):
    """Under DDP each process draws the same number of samples from the shards (resampled), so no rank waits
    for another at the epoch's end."""
    from mobilenets.tasks.data.shards import write_shards

    monkeypatch.chdir(tmp_path)
    data = DogsDataModule("dogs", synthetic=True, resolution=32, num_workers=0,
                          synthetic_options=dict(num_classes=3, train_per_class=8, test_per_class=1))
    samples = write_shards(data, "shards", splits=("train",), maxcount=4)["train"]
    args = ["--model", "ClassificationTask", "--model.num_classes", "3", "--model.resolution", "32",
            "--data", "DogsDataModule", "--data.root", "dogs", "--data.shards", "shards", "--data.batch_size", "4",
            *COMMON, "--trainer.max_epochs", "1", "--trainer.default_root_dir", "run", "--trainer.accelerator", "cpu",
            "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    result = subprocess.run([sys.executable, "-m", "mobilenets.cli", "fit", *args], capture_output=True,
                            text=True, timeout=300, env=LAUNCH_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = Path("run").rglob("last.ckpt")
    assert torch.load(last, weights_only=False)["global_step"] == samples // 2 // 4
