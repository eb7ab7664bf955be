"""Hidden and system folders and files (``.ipynb_checkpoints``, ``.DS_Store``, macOS's ``._x.jpg`` and
``__MACOSX``, Synology's ``@eaDir``, Windows' ``Thumbs.db``) are neither classes nor images, everywhere the suite
walks a tree; the listing is otherwise torchvision's ``ImageFolder``'s, order and class indices included."""

import shutil
from pathlib import Path

import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from mobilenets.tasks.classification import DogsDataModule
from mobilenets.tasks.classification.data import read_image_folder
from mobilenets.tasks.classification.imagenet import read_imagenet
from mobilenets.tasks.classification.synthetic import write_imagenet
from mobilenets.tasks.data.images import image_files
from mobilenets.tasks.distillation import SemiSupervisedDataModule
from mobilenets.tasks.face_embedding.data import read_identity_folders
from mobilenets.tasks.faces.alignment import align_tree


def _image(path: Path, colour: tuple = (200, 40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)


def _clutter(folder: Path, image_inside: bool = True) -> None:
    """What a notebook, a Mac, a Synology box and Windows leave in ``folder``, with images inside the folders."""
    for name in (".ipynb_checkpoints", "@eaDir", "__MACOSX"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        if image_inside:
            _image(folder / name / "copy.jpg")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS metadata named like an image


@pytest.fixture
def class_tree(tmp_path):
    """``root/<class>/`` for two classes, a nested folder of one class, and clutter at every level."""
    root = tmp_path / "pets"
    for index in range(3):
        _image(root / "cat" / f"{index}.jpg")
        _image(root / "dog" / f"{index}.png", (40, 40, 200))
    _image(root / "dog" / "more" / "nested.jpg")
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    for folder in (root, root / "cat", root / "dog", root / "dog" / "more"):
        _clutter(folder)
    return root, clean


def test_class_folders_list_as_imagefolder_does_without_the_clutter(class_tree):
    cluttered, clean = class_tree
    records, classes = read_image_folder(cluttered)
    reference = ImageFolder(str(clean))
    assert classes == reference.classes == ["cat", "dog"]
    assert [(record.path.relative_to(cluttered), record.label) for record in records] == [
        (Path(path).relative_to(clean), label) for path, label in reference.samples]
    assert len(records) == 7
    identities, names = read_identity_folders(cluttered)
    assert names == ["cat", "dog"] and [r.path for r in identities] == [r.path for r in records]


def test_a_datamodule_on_a_cluttered_imagefolder_trains_on_its_classes_only(class_tree):
    cluttered, _ = class_tree
    data = DogsDataModule(str(cluttered), layout="imagefolder", val_fraction=0.3, num_workers=0, resolution=32)
    data.setup("fit")
    assert data.class_names == ["cat", "dog"]
    assert len(data.datasets["train"]) + len(data.datasets["val"]) == 7


def test_image_walks_skip_hidden_folders_and_files(class_tree, tmp_path):
    cluttered, clean = class_tree
    assert [path.relative_to(cluttered) for path in image_files(cluttered)] == [
        path.relative_to(clean) for path in sorted(clean.rglob("*.*"))]
    data = DogsDataModule(str(cluttered), layout="imagefolder", predict_dir=str(cluttered), num_workers=0,
                          resolution=32)
    semi_supervised = SemiSupervisedDataModule(data, unlabeled=str(cluttered))
    assert len(data.predict_records()) == len(semi_supervised.unlabeled_records()) == 7
    summary = align_tree(cluttered, tmp_path / "aligned")
    assert summary.images == 7  # none of the clutter is read as a photo (the ._photo.jpg would be unreadable)


@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_imagenet_ignores_clutter_in_train_and_val(tmp_path, layout):
    root = write_imagenet(tmp_path / "imagenet", num_classes=3, train_per_class=2, val_per_class=2, layout=layout)
    splits, wnids, _ = read_imagenet(root)
    images = root / "ILSVRC" / "Data" / "CLS-LOC" if layout == "kaggle" else root
    for folder in (images / "train", images / "train" / wnids[0], images / "val"):
        _clutter(folder, image_inside=layout == "folders" or folder.name != "val")
    cluttered, cluttered_wnids, skipped = read_imagenet(root)
    assert cluttered_wnids == wnids and skipped == []
    assert {name: [r.path for r in records] for name, records in cluttered.items()} == {
        name: [r.path for r in records] for name, records in splits.items()}
