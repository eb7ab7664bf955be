"""WebDataset shards: ``mobilenets shards`` writes any image dataset; classification and geolocation train from
them (geolocation without listing, or even having, its training image files); every sample streams once per
epoch across workers; broken samples and unfinished shard sets get clear errors."""

import io
import json
import logging
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from helpers import logged_metrics

from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.tasks.classification import DogsDataModule
from mobilenets.tasks.data.images import BadRecordError
from mobilenets.tasks.data.shards import ShardedImages, write_shards
from mobilenets.tasks.detection import CocoDataModule
from mobilenets.tasks.distillation import SemiSupervisedDataModule
from mobilenets.tasks.geolocation import GeoDataModule

DOGS = dict(num_classes=3, train_per_class=8, test_per_class=2)


@pytest.fixture(scope="module")
def dog_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("dogs")
    data = DogsDataModule(str(root / "dogs"), synthetic=True, resolution=32, num_workers=0, synthetic_options=DOGS)
    counts = write_shards(data, root / "shards", maxcount=5)
    return root, data, counts


def test_shards_hold_every_record_with_its_bytes_and_label(dog_shards):
    root, data, counts = dog_shards
    assert counts == {split: len(data.datasets[split]) for split in ("train", "val", "test")}
    index = json.loads((root / "shards" / "train.json").read_text())
    assert index["samples"] == counts["train"] and len(index["shards"]) == -(-counts["train"] // 5)
    with tarfile.open(root / "shards" / index["shards"][0]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    meta = json.loads(members["000000000.json"])
    record = data.datasets["train"].records[0]
    assert meta == {"label": record.label, "source": record.source, "file": Path(record.path).name, "index": 0}
    assert members["000000000.jpg"] == Path(record.path).read_bytes()  # the file's own bytes, not re-encoded


@pytest.mark.parametrize("workers", [0, 2])
def test_each_sample_streams_once_per_epoch(dog_shards, workers):
    root, data, counts = dog_shards
    stream = ShardedImages(root / "shards", "train", data.eval_transform(), shuffle_buffer=10)
    loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=workers)
    epochs = [[i for batch in loader for i in batch["index"].tolist()] for _ in range(2)]
    assert all(sorted(epoch) == list(range(counts["train"])) for epoch in epochs)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    labels = {i: int(label) for batch in loader for i, label in zip(batch["index"].tolist(), batch["label"].tolist())}
    assert labels == {i: r.label for i, r in enumerate(data.datasets["train"].records)}


def test_classification_trains_from_shards_through_the_cli(dog_shards, tmp_path, monkeypatch):
    root, _, counts = dog_shards
    monkeypatch.chdir(tmp_path)
    main(["fit", "--model", "ClassificationTask", "--model.num_classes", "3", "--model.backbone.alpha", "0.25",
          "--model.resolution", "32", "--data", "DogsDataModule", "--data.root", str(root / "dogs"),
          "--data.shards", str(root / "shards"), "--data.batch_size", "4", "--data.num_workers", "0",
          "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
          "--trainer.default_root_dir", "run"])
    rows = logged_metrics(Path("run"))
    steps = [row for row in rows if row.get("train/loss")]
    assert len(steps) == 2 * (counts["train"] // 4) and any(row.get("val/top1") for row in rows)


def test_geolocation_streams_training_photos_it_never_lists(tmp_path):
    options = dict(synthetic_options={"num_images": 160, "num_regions": 4}, t1=30, t2=3, max_level=8, resolution=32,
                   num_workers=0, batch_size=8)
    files = GeoDataModule(str(tmp_path / "geo"), synthetic=True, **options)
    write_shards(files, tmp_path / "shards", splits=("train",), maxcount=40)
    train_ids = {Path(r.path) for r in files.datasets["train"].records}
    for path in train_ids:
        path.unlink()  # the training photos now exist only inside the shards
    streamed = GeoDataModule(str(tmp_path / "geo"), shards=str(tmp_path / "shards"), **options)
    streamed.prepare_data()
    streamed.setup("fit")
    assert isinstance(streamed.datasets["train"], ShardedImages)
    batch = next(iter(streamed.train_dataloader()))
    expected = {Path(r.path).name: r.label for r in files.datasets["train"].records}
    for file, label in zip(batch["file"], batch["label"].tolist()):
        assert label == pytest.approx(list(expected[file]))  # (lat, lon, cell) recomputed from the coordinates
    assert len(streamed.datasets["val"]) == len(files.datasets["val"])


def test_broken_samples_and_unfinished_shard_sets(dog_shards, tmp_path, caplog):
    root, data, counts = dog_shards
    shutil.copytree(root / "shards", tmp_path / "shards")
    first = tmp_path / "shards" / json.loads((root / "shards" / "train.json").read_text())["shards"][0]
    with tarfile.open(first) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(first, "w") as tar:
        for member, payload in members:
            payload = b"not a jpeg" if member.name == "000000002.jpg" else payload
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    stream = ShardedImages(tmp_path / "shards", "train", data.eval_transform(), shuffle_buffer=0)
    with pytest.raises(BadRecordError, match=r"train-000000\.tar:000000002 \(.*\): unreadable image"):
        list(stream)
    skipping = ShardedImages(tmp_path / "shards", "train", data.eval_transform(), shuffle_buffer=0, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="mobilenets"):
        assert len(list(skipping)) == counts["train"] - 1
    assert sum("skip_bad: skipped" in r.getMessage() for r in caplog.records) == 1
    (tmp_path / "shards" / "train.json").unlink()
    with pytest.raises(FileNotFoundError, match="train.json not found.*unfinished shard set"):
        ShardedImages(tmp_path / "shards", "train", data.eval_transform())
    with pytest.raises(ValueError, match="CocoDataModule cannot train from shards"):
        CocoDataModule(str(tmp_path), shards=str(tmp_path / "shards"))
    with pytest.raises(SettingError, match="label_fraction and unlabeled"):
        SemiSupervisedDataModule(DogsDataModule(str(tmp_path), shards=str(tmp_path / "shards")), label_fraction=0.5)


def test_shards_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "dogs.yaml"
    config.write_text("model:\n  class_path: ClassificationTask\n  init_args: {num_classes: 3, resolution: 32}\n"
                      "data:\n  class_path: DogsDataModule\n  init_args: {root: dogs, synthetic: true, num_workers: 0,"
                      " synthetic_options: {num_classes: 3, train_per_class: 4, test_per_class: 1}}\n")
    assert main(["shards", "--config", str(config), "--output", "out", "--splits", "train",
                 "--data.init_args.val_fraction", "0.25"]) == 0
    assert json.loads(Path("out/train.json").read_text())["samples"] == 9  # 12 images, a quarter for validation
