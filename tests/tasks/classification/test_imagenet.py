"""ImageNet in its three distributed layouts: labels agree with torchvision's own devkit parser and ImageFolder, with
Kaggle's published CSV rows, across layouts; bad input is named; the paper config trains through the CLI."""

import tarfile
from pathlib import Path

import pytest
import torch
from helpers import logged_metrics
from torchvision.datasets import ImageFolder

from mobilenets.cli import main
from mobilenets.tasks.classification import ImageNetDataModule, write_imagenet
from mobilenets.tasks.classification.imagenet import read_devkit_val_labels, read_imagenet, read_kaggle_val_labels
from mobilenets.tasks.data.images import BadRecordError

REPO = Path(__file__).resolve().parents[3]


def _val_labels(splits, wnids):
    """{validation file name: wnid}, whatever folder the layout keeps the file in."""
    return {record.path.name: wnids[record.label] for record in splits["val"]}


def test_the_three_layouts_give_the_same_labels_in_sorted_wnid_order(tmp_path):
    read = {layout: read_imagenet(write_imagenet(tmp_path / layout, layout=layout)) for layout in
            ("kaggle", "devkit", "folders")}
    reference = ImageFolder(str(tmp_path / "folders" / "train"))  # torchvision's class order and labels
    for layout, (splits, wnids, skipped) in read.items():
        assert wnids == reference.classes and wnids == sorted(wnids) and skipped == []
        assert [(str(r.path.relative_to(r.path.parents[1])), r.label) for r in splits["train"]] == \
            [(str(Path(path).relative_to(Path(path).parents[1])), label) for path, label in reference.samples]
    folders = ImageFolder(str(tmp_path / "folders" / "val"))
    expected = {Path(path).name: folders.classes[label] for path, label in folders.samples}
    assert len(expected) == 24
    for layout, (splits, wnids, _) in read.items():
        assert _val_labels(splits, wnids) == expected, layout


def test_devkit_labels_equal_torchvisions_parser(tmp_path, monkeypatch):
    """torchvision's ImageNet reads the same devkit (its parse_devkit_archive, given our folder as the archive)."""
    import torchvision.datasets.imagenet as tv_imagenet

    root = write_imagenet(tmp_path / "imagenet", layout="devkit", num_classes=5)
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as archive:
        archive.add(root / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    monkeypatch.setattr(tv_imagenet, "_verify_archive", lambda *args: None)  # its MD5 is the real archive's
    tv_imagenet.parse_devkit_archive(str(root))
    _, val_wnids = torch.load(root / "meta.bin", weights_only=True)
    assert read_devkit_val_labels(root / "ILSVRC2012_devkit_t12") == val_wnids


def test_kaggle_rows_as_published(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text("ImageId,PredictionString\n"
                    "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \n"
                    "ILSVRC2012_val_00034236,n01496331 0 0 499 375 \n")
    assert read_kaggle_val_labels(path) == {"ILSVRC2012_val_00008726": "n02119789",
                                            "ILSVRC2012_val_00034236": "n01496331"}
    path.write_text("id,label\nILSVRC2012_val_00008726,n02119789\n")
    with pytest.raises(BadRecordError, match="LOC_val_solution.csv: expected the header 'ImageId,PredictionString'"):
        read_kaggle_val_labels(path)
    path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,\n")
    with pytest.raises(BadRecordError, match=r"LOC_val_solution.csv, line 2: expected 'ImageId,wnid x0 y0 x1 y1"):
        read_kaggle_val_labels(path)


def test_bad_validation_sets_are_named_or_counted(tmp_path):
    root = write_imagenet(tmp_path / "k", layout="kaggle", num_classes=3, train_per_class=2, val_per_class=2)
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    (val / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(BadRecordError, match=r"val/ILSVRC2012_val_00000002.JPEG \(LOC_val_solution.csv\): image file "
                                             r"not found"):
        read_imagenet(root)
    splits, _, skipped = read_imagenet(root, skip_bad=True)
    assert len(splits["val"]) == 5 and len(skipped) == 1
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(FileNotFoundError, match="not in class folders .* set val_labels"):
        read_imagenet(root)
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        read_imagenet(tmp_path / "nothing")


def test_paper_config_trains_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs" / "paper" / "imagenet.yaml"), "--data.init_args.root", "inet",
          "--data.init_args.synthetic", "true", "--data.init_args.synthetic_options", "{num_classes: 4}",
          "--model.init_args.num_classes", "4", "--model.init_args.backbone.alpha", "0.25",
          "--model.init_args.resolution", "64", "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
          "--trainer.precision", "32", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", "run", "--trainer.log_every_n_steps", "1"])
    rows = logged_metrics(Path("run"))
    top1 = [float(row["val/top1"]) for row in rows if row.get("val/top1")]
    assert len(top1) == 2
    data = ImageNetDataModule("inet")
    data.setup("fit")
    assert data.class_names == sorted(data.class_names) and len(data.datasets["test"]) == 16


def test_kaggle_csv_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,PredictionString\r\nILSVRC2012_val_00008726,n02119789 255 142 454 329 \r\n")
    assert read_kaggle_val_labels(path) == {"ILSVRC2012_val_00008726": "n02119789"}
