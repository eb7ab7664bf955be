"""Fault injection across the five tasks' data: every broken image either raises an error naming the file and
the record that listed it, or, with ``skip_bad: true``, is skipped, counted and logged; a loader worker that
dies mid-epoch stops the fit with PyTorch's error and leaves the last epoch's checkpoint to resume from.

The rest of the fault suite sits beside the code it breaks: malformed label and annotation files and bad
records (``tests/tasks/*/test_data.py``: Stanford Dogs ``.mat`` keys and labels, COCO JSON and references,
CelebA attribute and partition lines, LFW ``pairs.txt``, geotagged CSV columns), NaN and out-of-range
coordinates (``tests/tasks/geolocation``), degenerate and outside boxes (``tests/tasks/detection``,
``tests/tasks/classification``), a full disk while writing a checkpoint and SIGTERM (``tests/test_resume.py``).
"""

import logging
import shutil
from pathlib import Path

import pytest
import torch

from mobilenets.tasks.classification import DogsDataModule
from mobilenets.tasks.detection import CocoDataModule
from mobilenets.tasks.face_attributes import CelebADataModule
from mobilenets.tasks.face_embedding import FaceIdentityDataModule
from mobilenets.tasks.geolocation import GeoDataModule
from mobilenets.tasks.data.images import BadRecordError

DATA = {
    "classification": (DogsDataModule, dict(synthetic_options=dict(num_classes=2, train_per_class=3,
                                                                     test_per_class=1))),
    "detection": (CocoDataModule, dict(synthetic_options=dict(train_images=3, val_images=2, image_size=64))),
    "face_attributes": (CelebADataModule, dict(synthetic_options=dict(num_images=12))),
    "face_embedding": (FaceIdentityDataModule, dict(images_per_identity=2, synthetic_options=dict(
        train_identities=2, train_images=4, test_identities=2, test_images=2, folds=1, pairs_per_fold=2))),
    "geolocation": (GeoDataModule, dict(synthetic_options=dict(num_images=40, num_regions=2), t1=20, t2=2,
                                        max_level=6)),
}


def _datamodule(task: str, root: Path, **options):
    data_class, kwargs = DATA[task]
    return data_class(str(root), resolution=32, num_workers=0, batch_size=2, **{**kwargs, **options})


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Each task's tiny synthetic dataset, written once."""
    roots = {}
    for task in DATA:
        root = tmp_path_factory.mktemp(task) / "data"
        _datamodule(task, root, synthetic=True).prepare_data()
        roots[task] = root
    return roots


def _first_training_image(datamodule) -> Path:
    dataset = datamodule.datasets["train"]
    if hasattr(dataset, "records"):
        return Path(dataset.records[0].path)
    return dataset.image_dir / dataset.coco.imgs[dataset.image_ids[0]]["file_name"]


def _load_everything(datamodule) -> int:
    datamodule.setup("fit")
    count = 0
    for split in ("train", "val", "test"):
        dataset = datamodule.datasets[split]
        for index in range(len(dataset)):
            dataset[index]
            count += 1
    return count


def _break(path: Path, fault: str) -> None:
    data = path.read_bytes()
    if fault == "corrupt":
        path.write_bytes(b"\x00garbage" + data[16:])  # no JPEG signature: no decoder takes it
    elif fault == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif fault == "zero_bytes":
        path.write_bytes(b"")
    else:
        path.unlink()


FAULTS = ["corrupt", "truncated", "zero_bytes", "missing"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("task", list(DATA))
def test_a_broken_image_is_named_or_skipped_counted_and_logged(task, fault, clean, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(clean[task], root)
    reference = _datamodule(task, root)
    total = _load_everything(reference)
    victim = _first_training_image(reference)
    _break(victim, fault)
    if task == "face_embedding" and fault == "missing":  # identities are folder listings: nothing lists it now
        assert _load_everything(_datamodule(task, root)) == total - 1  # (pairs.txt's missing files: test_data.py)
        return

    with pytest.raises(BadRecordError) as raised:
        _load_everything(_datamodule(task, root))
    message = str(raised.value)
    assert victim.name in message and "(" in message  # the file, then where it was listed
    assert ("not found" if fault == "missing" else "unreadable image") in message

    skipping = _datamodule(task, root, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="mobilenets"):
        loaded = _load_everything(skipping)
    assert len(skipping.skipped) == 1 and victim.name in skipping.skipped[0]
    assert loaded == total - 1
    assert any("skip" in record.getMessage() and "1" in record.getMessage() for record in caplog.records)


def test_a_worker_dying_mid_epoch_stops_the_fit_and_the_last_checkpoint_remains(tmp_path, monkeypatch):
    """Epoch 1 finishes and writes last.ckpt; in epoch 2 a loader worker is killed: the fit stops with PyTorch's
    error naming the worker, and last.ckpt (epoch 1's) is there to resume from."""
    import os

    import pytorch_lightning as pl

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.data import images as images_module
    from mobilenets.tasks.classification import ClassificationTask
    from mobilenets.tasks.data.resume import ExactResume, find_last_checkpoint

    marker = tmp_path / "crash"
    real_read = images_module.read_image

    def read_or_die(path, source):
        if marker.exists() and torch.utils.data.get_worker_info() is not None:
            os._exit(3)  # a worker crash: no exception, the process is simply gone
        return real_read(path, source)

    class CrashInEpoch2(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            marker.touch()

    monkeypatch.setattr(images_module, "read_image", read_or_die)
    data = DogsDataModule(str(tmp_path / "dogs"), synthetic=True, resolution=32, batch_size=2, num_workers=1,
                          persistent_workers=False,
                          synthetic_options=dict(num_classes=2, train_per_class=3, test_per_class=1))
    task = ClassificationTask(num_classes=2, backbone=BackboneConfig(alpha=0.25), resolution=32)
    trainer = pl.Trainer(max_epochs=3, default_root_dir=tmp_path / "run", enable_progress_bar=False,
                         callbacks=[ExactResume(), CrashInEpoch2()], logger=False, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="DataLoader worker .* exited unexpectedly"):
        trainer.fit(task, data)
    last = find_last_checkpoint(tmp_path / "run")
    assert last is not None and torch.load(last, weights_only=False)["epoch"] == 0
