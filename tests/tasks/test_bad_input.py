"""What each reader says when fed what users feed it by mistake: a text file in another encoding or a binary file,
an empty or missing folder, a list naming no images; and file names that are not UTF-8, which must still work."""

import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from mobilenets.cli import main
from mobilenets.tasks.classification import DogsDataModule
from mobilenets.tasks.detection import CocoDataModule
from mobilenets.tasks.face_attributes import CelebADataModule
from mobilenets.tasks.face_embedding import FaceIdentityDataModule
from mobilenets.tasks.geolocation import GeoDataModule
from mobilenets.tasks.data.images import BadRecordError

#: per reader: a small synthetic dataset in its published layout, and the text file it reads first
READERS = {
    "geolocation": (lambda root, **k: GeoDataModule(str(root), t1=30, t2=3, max_level=8, num_workers=0, **k),
                    {"num_images": 40, "num_regions": 2}, "train.csv"),
    "celeba": (lambda root, **k: CelebADataModule(str(root), num_workers=0, **k), {"num_images": 10},
               "list_attr_celeba.txt"),
    "lfw pairs": (lambda root, **k: FaceIdentityDataModule(str(root), batch_size=8, num_workers=0, **k),
                  dict(train_identities=3, train_images=2, test_identities=20, test_images=2, pairs_per_fold=1),
                  "pairs.txt"),
    "coco": (lambda root, **k: CocoDataModule(str(root), num_workers=0, **k),
             dict(train_images=2, val_images=2, image_size=48), "annotations/instances_train2017.json"),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    for name, (make, options, _) in READERS.items():
        make(root / name, synthetic=True, synthetic_options=options).prepare_data()
    return root


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("content, byte", [("é".encode("latin-1"), "0xe9"), (bytes([0x89, 0x50, 0x4E, 0x47]), "0x89")])
def test_a_file_that_is_not_utf8_text_names_its_line(datasets, tmp_path, name, content, byte):
    """A Latin-1 file (Excel's default on many systems), or a PNG given in place of the list."""
    make, _, text_file = READERS[name]
    root = tmp_path / name
    shutil.copytree(datasets / name, root)
    path = root / text_file
    data = path.read_bytes()  # the content goes on the second line
    path.write_bytes(data.replace(b"\n", b"\n" + content, 1) if b"\n" in data else b"\n" + content + data)
    with pytest.raises(BadRecordError, match=rf"{text_file}:2: not UTF-8 text \(byte {byte}\); .*re-save it as UTF-8"):
        make(root).setup("fit")


def test_folders_that_are_empty_missing_or_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    expected = r"layout imagefolder reads <root>/<class>/<image>"
    with pytest.raises(BadRecordError, match=rf"empty: no class folders in it; {expected}"):
        DogsDataModule(str(tmp_path / "empty"), layout="imagefolder").setup("fit")
    for name in ("a_file", "nowhere"):
        with pytest.raises(FileNotFoundError, match=rf"{name}: folder not found; {expected}"):
            DogsDataModule(str(tmp_path / name), layout="imagefolder").setup("fit")
    (tmp_path / "classes" / "beagle").mkdir(parents=True)
    (tmp_path / "classes" / "pug").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "classes" / "pug" / "1.jpg")
    with pytest.raises(BadRecordError, match=r"class folders without images .*\['beagle'\]"):
        DogsDataModule(str(tmp_path / "classes"), layout="imagefolder").setup("fit")


def test_lists_that_name_no_images(datasets, tmp_path):
    root = tmp_path / "celeba"
    shutil.copytree(datasets / "celeba", root)
    (root / "list_eval_partition.txt").write_text("\n")
    with pytest.raises(BadRecordError, match=r"list_eval_partition.txt: lists no images; expected lines"):
        CelebADataModule(str(root)).setup("fit")
    for path in (root / "img_align_celeba").iterdir():  # every listed image gone: nothing to train on
        path.unlink()
    shutil.copy(datasets / "celeba" / "list_eval_partition.txt", root)
    with pytest.raises(BadRecordError, match=r"celeba: no training images found \(skip_bad skipped 10 bad records"):
        CelebADataModule(str(root), skip_bad=True).setup("fit")


def test_the_command_ends_with_the_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"^mobilenets: empty: no class folders in it; layout imagefolder"):
        main(["fit", "--model", "ClassificationTask", "--model.num_classes", "2", "--data", "DogsDataModule",
              "--data.root", "empty", "--data.layout", "imagefolder", "--trainer.max_epochs", "1"])


def test_file_names_that_are_not_utf8_train_and_predict(tmp_path, monkeypatch):
    """Linux file names are bytes; ones that are not UTF-8 (an old Latin-1 archive) are read, trained on, and
    written to the predictions file as their own bytes, so each row still names its file."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for split in (b"train", b"val"):
        for cls in (b"caf\xe9", b"plain"):
            folder = os.path.join(b"data", split, cls)
            os.makedirs(folder)
            for i in range(3):
                image = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
                image.save(os.fsdecode(os.path.join(folder, b"img\xff%d.jpg" % i)))
    common = ["--model", "ClassificationTask", "--model.num_classes", "2", "--model.backbone.alpha", "0.25",
              "--model.resolution", "32", "--data", "DogsDataModule", "--data.layout", "imagefolder", "--data.root",
              "data", "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", "run", "--predictions.output_file", "predictions.csv"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    (checkpoint,) = (tmp_path / "run").rglob("best-epoch=*.ckpt")
    main(["predict", *common, "--ckpt_path", str(checkpoint), "--data.predict_dir", "data/val"])
    with open("predictions.csv", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and all(os.path.isfile(row["file"]) for row in rows)
    assert {os.fsencode(row["file"]).split(b"/")[2] for row in rows} == {b"caf\xe9", b"plain"}
    assert {os.fsencode(row["class_1"]) for row in rows} <= {b"caf\xe9", b"plain"}
