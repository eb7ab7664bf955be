"""Face detection and alignment on real photographs: our MTCNN against the ``mtcnn`` package's own (TensorFlow)
implementation on scikit-image's astronaut photo, scenes with faces pasted at known boxes, the aligned crops, the
``align`` command, and ``align: true`` in the face data modules (cache, invalidation, faceless images)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from mobilenets.cli.main import main
from mobilenets.tasks.faces.alignment import AlignedFaces, Alignment, FaceAligner, align_tree
from mobilenets.tasks.face_attributes.data import CelebADataModule
from mobilenets.tasks.face_attributes.synthetic import write_celeba
from mobilenets.tasks.faces.detection import FaceDetector
from mobilenets.tasks.data.images import BadRecordError

skimage_data = pytest.importorskip("skimage.data")

#: the astronaut's face in scikit-image's photo, as the reference MTCNN finds it (x1, y1, x2, y2)
ASTRONAUT_FACE = (182.0, 64.0, 265.0, 171.0)


def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def scene(placements: list[tuple[int, int, float]], size=(640, 480), seed=0) -> tuple[Image.Image, list[tuple]]:
    """A noise background with the astronaut's head pasted at (x, y) scaled by s; returns the known face boxes."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray((rng.random((size[1], size[0], 3)) * 60 + 100).astype(np.uint8))
    left, top = 140, 20  # the pasted head: the photo's (140, 20, 300, 210)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    boxes = []
    for x, y, s in placements:
        picture.paste(astronaut().crop((left, top, 300, 210)).resize((round(160 * s), round(190 * s))), (x, y))
        boxes.append(((x1 - left) * s + x, (y1 - top) * s + y, (x2 - left) * s + x, (y2 - top) * s + y))
    return picture, boxes


def noise(seed=1) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((200, 240, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def detect(detector, image: Image.Image):
    return detector.detect(torch.from_numpy(np.array(image)).permute(2, 0, 1))


REFERENCE = """
import json, sys
import numpy as np
from mtcnn import MTCNN
detector = MTCNN()
found = [detector.detect_faces(np.load(path), box_format="xyxy", threshold_onet=0.7) for path in sys.argv[1:]]
print(json.dumps(found, default=float))
"""


def reference_detections(images: list[Image.Image], folder: Path) -> list[list[dict]]:
    """The mtcnn package's own detections, run in a fresh process on TensorFlow's Keras (in this one, another test
    may have put Keras on the torch backend)."""
    paths = []
    for index, image in enumerate(images):
        paths.append(str(folder / f"{index}.npy"))
        np.save(paths[-1], np.array(image))
    done = subprocess.run([sys.executable, "-c", REFERENCE, *paths], capture_output=True, text=True, check=True,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_our_mtcnn_equals_the_mtcnn_package_on_real_photos(detector, tmp_path):
    """The same weights in both: boxes, scores and landmarks agree up to the resampling (TF's area/crop_and_resize
    against torch's area interpolation and roi_align): up to about 4 px on the boxes, 2 px on the landmarks."""
    pytest.importorskip("tensorflow")
    images = [astronaut(), scene([(40, 60, 0.8), (380, 200, 0.55)])[0]]
    for image, theirs in zip(images, reference_detections(images, tmp_path)):
        ours = detect(detector, image)
        assert len(ours) == len(theirs) >= 1
        pairing = box_iou(torch.tensor([face.box for face in ours]), torch.tensor([f["box"] for f in theirs],
                                                                                  dtype=torch.float32)).argmax(1)
        assert sorted(pairing.tolist()) == list(range(len(theirs)))  # one to one
        for face, expected in zip(ours, [theirs[i] for i in pairing]):
            assert np.abs(np.array(face.box) - expected["box"]).max() <= 6
            assert face.score == pytest.approx(expected["confidence"], abs=0.01)
            points = [expected["keypoints"][name] for name in
                      ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
            assert np.abs(np.array(face.landmarks) - np.array(points)).max() <= 3


def test_faces_found_at_their_known_boxes_and_none_in_noise(detector):
    picture, boxes = scene([(30, 40, 1.0), (330, 60, 0.6), (480, 300, 0.35)])
    found = detect(detector, picture)
    assert len(found) == 3
    iou = box_iou(torch.tensor([face.box for face in found]), torch.tensor(boxes))
    assert (iou.max(dim=0).values > 0.7).all(), iou  # every known face matched by one detection
    assert detect(detector, noise()) == []
    with pytest.raises(ValueError, match="expected a \\(3, H, W\\) RGB image"):
        detector.detect(torch.zeros(1, 50, 50))


@pytest.mark.parametrize("method", ["similarity", "box"])
def test_aligned_crop_is_centred_on_the_face(detector, method):
    """Detected again in its crop, the face sits where the alignment put it: centred left to right (both); its
    box centred top to bottom too (box), or its landmarks on the template (similarity, whose template puts the
    eyes at 46% of the height, so the face box's centre sits lower)."""
    alignment = Alignment(size=160, margin=32, method=method)
    picture, _ = scene([(300, 150, 0.7)])
    crop, face = FaceAligner(alignment).main_crop(picture)
    assert crop.size == (160, 160)
    (again,) = detect(detector, crop)
    centre = np.array([(again.box[0] + again.box[2]) / 2, (again.box[1] + again.box[3]) / 2])
    assert abs(centre[0] - 80) < 6, centre
    if method == "similarity":  # where the least-squares fit sends the photo's landmarks (a similarity cannot
        from skimage.transform import SimilarityTransform  # put five of them exactly on the template)

        fitted = SimilarityTransform.from_estimate(np.array(face.landmarks), alignment.template())
        assert np.abs(np.array(again.landmarks) - fitted(np.array(face.landmarks))).max() < 2.5
        assert np.abs(np.array(again.landmarks) - alignment.template()).max() < 9
    else:
        assert abs(centre[1] - 80) < 12, centre


def test_the_main_face_is_the_big_central_one(detector):
    picture, boxes = scene([(20, 20, 0.45), (230, 140, 0.9)])
    _, face = FaceAligner().main_crop(picture)
    assert box_iou(torch.tensor([face.box]), torch.tensor(boxes)).argmax() == 1


def photo_tree(root: Path) -> Path:
    (root / "alice").mkdir(parents=True)
    (root / "empty").mkdir()
    astronaut().save(root / "alice" / "portrait.jpg", quality=95)
    scene([(40, 60, 0.8), (380, 200, 0.55)])[0].save(root / "alice" / "group.png")
    noise().save(root / "empty" / "noise.png")
    return root


def test_align_command_writes_the_tree_the_csv_and_the_faceless_list(tmp_path, capsys):
    source = photo_tree(tmp_path / "photos")
    assert main(["align", str(source), str(tmp_path / "one")]) == 0
    assert "3 images, 2 face crops" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*.*")) == [
        "alice/group.png", "alice/portrait.jpg", "faces.csv", "no_face.txt"]
    assert (tmp_path / "one" / "no_face.txt").read_text() == "empty/noise.png\n"
    assert Image.open(tmp_path / "one" / "alice" / "portrait.jpg").format == "JPEG"

    main(["align", str(source), str(tmp_path / "all"), "--all-faces", "--method", "box", "--size", "96",
          "--draw", str(tmp_path / "drawn")])
    assert sorted(p.name for p in (tmp_path / "drawn").rglob("*")) == ["alice", "group.png", "portrait.png"]
    rows = list(csv.DictReader(open(tmp_path / "all" / "faces.csv")))
    assert [(row["source"], row["crop"]) for row in rows] == [
        ("alice/group.png", "alice/group_0.png"), ("alice/group.png", "alice/group_1.png"),
        ("alice/portrait.jpg", "alice/portrait_0.jpg")]
    assert len(rows[0]) == 18 and Image.open(tmp_path / "all" / "alice" / "group_1.png").size == (96, 96)

    (source / "empty" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match="broken.jpg"):
        main(["align", str(source), str(tmp_path / "bad")])
    main(["align", str(source), str(tmp_path / "skipped"), "--skip-bad"])
    assert "1 unreadable skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such folder"):
        main(["align", str(tmp_path / "nowhere"), str(tmp_path / "x")])


def test_alignment_settings_are_checked():
    with pytest.raises(ValueError, match="method must be"):
        Alignment(method="affine")
    with pytest.raises(ValueError, match="margin < size"):
        Alignment(size=64, margin=64)


def celeba_photos(root: Path) -> Path:
    """A CelebA layout (the published files, written by our writer) whose images are photographs: the astronaut
    pasted into scenes at different places and sizes, except one image of plain noise."""
    write_celeba(root, num_images=10)
    images = sorted((root / "img_align_celeba").iterdir())
    for index, path in enumerate(images):
        picture = noise(index) if index == 3 else scene([(40 + 30 * index, 30 + 10 * index, 0.5 + 0.05 * index)],
                                                        size=(420, 320), seed=index)[0]
        picture.save(path, quality=95)
    return root


def test_faces_are_detected_once_in_prepare_data_and_the_other_ranks_read_the_crops(tmp_path, monkeypatch):
    """Under DDP Lightning runs ``prepare_data`` on one process per node before every rank's ``setup``: that one
    process detects the faces; a rank's own data module then reads the cached crops without detecting any."""
    root = celeba_photos(tmp_path / "celeba")
    calls = []
    original = FaceAligner.main_crop
    monkeypatch.setattr(FaceAligner, "main_crop", lambda self, image: calls.append(1) or original(self, image))
    settings = dict(resolution=64, batch_size=2, num_workers=0, align=True, skip_bad=True)
    first = CelebADataModule(str(root), **settings)
    first.prepare_data()
    assert len(calls) == 10  # every image once, the faceless one included
    first.setup("fit")
    other_rank = CelebADataModule(str(root), **settings)
    other_rank.setup("fit")
    assert len(calls) == 10
    assert [r.path for r in other_rank.datasets["train"].records] == [r.path for r in first.datasets["train"].records]
    assert len(first.skipped) == len(other_rank.skipped) == 1  # each counts the faceless image once


def test_celeba_align_true_reads_cached_crops_and_redoes_changed_files(tmp_path, monkeypatch):
    root = celeba_photos(tmp_path / "celeba")
    settings = dict(resolution=64, batch_size=2, num_workers=0, align=True, alignment={"size": 96, "margin": 16})
    with pytest.raises(BadRecordError, match="000004.jpg .*no face found to align; pass skip_bad"):
        CelebADataModule(str(root), **settings).setup("fit")

    calls = []
    original = FaceAligner.main_crop
    monkeypatch.setattr(FaceAligner, "main_crop", lambda self, image: calls.append(1) or original(self, image))
    data = CelebADataModule(str(root), skip_bad=True, **settings)
    data.setup("fit")
    assert len(data.skipped) == 1 and "000004.jpg" in data.skipped[0]
    assert sum(len(data.datasets[s]) for s in ("train", "val", "test")) == 9
    assert len(calls) == 6  # the failed run above had cached the first four (the faceless one noted as such)
    cache = root / ".aligned" / "similarity-96-m16-min20" / "img_align_celeba"
    assert data.datasets["train"].records[0].path.parent == cache
    assert Image.open(cache / "000001.jpg").size == (96, 96)
    assert next(iter(data.train_dataloader()))["image"].shape == (2, 3, 64, 64)

    changed = root / "img_align_celeba" / "000002.jpg"
    scene([(10, 10, 0.9)], size=(420, 320))[0].save(changed)
    os.utime(changed, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    again = CelebADataModule(str(root), skip_bad=True, **settings)
    again.setup("fit")
    assert len(calls) == 7  # only the changed photo was aligned again

    photos = tmp_path / "to_predict"  # predict_dir photos (outside the dataset) are aligned too
    photos.mkdir()
    astronaut().save(photos / "portrait.jpg")
    predicting = CelebADataModule(str(root), skip_bad=True, predict_dir=str(photos), **settings)
    predicting.setup("predict")
    (record,) = predicting.datasets["predict"].records
    assert ".aligned" in record.path.parts and "external" in record.path.parts
    assert Image.open(record.path).size == (96, 96)

    with pytest.raises(ValueError, match="align and crop_to_box"):
        CelebADataModule(str(root), align=True, crop_to_box=True)

    (root / "img_align_celeba").rename(root / "img_celeba")  # CelebA's in-the-wild photos, the same file names
    wild = CelebADataModule(str(root), skip_bad=True, image_dir="img_celeba", **settings)
    wild.setup("fit")
    assert wild.datasets["train"].records[0].path.parent == root / ".aligned" / "similarity-96-m16-min20" / "img_celeba"


def test_cache_keeps_files_outside_the_root_apart(tmp_path):
    outside = tmp_path / "elsewhere" / "portrait.jpg"
    outside.parent.mkdir()
    astronaut().save(outside)
    faces = AlignedFaces(tmp_path / "data", Alignment(size=64, margin=8))
    crop = faces.crop_of(outside, "predict_dir[0]")
    assert crop.is_file() and (tmp_path / "data" / ".aligned") in crop.parents and "external" in crop.parts
    with pytest.raises(BadRecordError, match="missing.jpg \\(x\\): image file not found"):
        faces.crop_of(tmp_path / "missing.jpg", "x")


def test_align_tree_refuses_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadRecordError, match="no images found"):
        align_tree(tmp_path / "empty", tmp_path / "out")


def test_identity_folders_and_pairs_read_aligned_crops(tmp_path):
    """``align: true`` on the face embedding data: training images and LFW pair images become cached crops; a pair
    image without a face is an error naming it, or under ``skip_bad`` is counted and its pair drops out."""
    from mobilenets.tasks.face_embedding.data import FaceIdentityDataModule
    from mobilenets.tasks.face_embedding.synthetic import write_faces

    root = write_faces(tmp_path / "people", train_identities=2, train_images=4, test_identities=20, test_images=2,
                       pairs_per_fold=1)
    photos = sorted(root.rglob("*.jpg"))
    faceless = root / "lfw" / "Test_Person_0003" / "Test_Person_0003_0001.jpg"
    for index, path in enumerate(photos):
        picture = noise(index) if path == faceless else scene([(20 + 7 * (index % 10), 20 + 3 * (index % 10), 0.5)],
                                                              size=(300, 260), seed=index)[0]
        picture.save(path, quality=95)
    settings = dict(resolution=64, batch_size=4, images_per_identity=2, num_workers=0, align=True)
    with pytest.raises(BadRecordError, match="Test_Person_0003_0001.jpg .*no face found to align"):
        FaceIdentityDataModule(str(root), **settings).setup("fit")
    data = FaceIdentityDataModule(str(root), skip_bad=True, **settings)
    data.setup("fit")
    assert len(data.skipped) == 1 and len(data.datasets["train"]) == 8
    assert all(".aligned" in record.path.parts for record in data.datasets["val"].records)
    listed = {path for pair in data.pair_sets[0].pairs for path in (pair.first, pair.second)}
    assert len(data.datasets["val"]) == len(listed) - 1  # the faceless image's pairs cannot be scored
    assert next(iter(data.val_dataloader()))["image"].shape[1:] == (3, 64, 64)


def test_face_benchmark_finds_the_same_faces_as_the_reference():
    """``mobilenets bench faces``, in its own process (TensorFlow's Keras for the reference)."""
    pytest.importorskip("tensorflow")
    done = subprocess.run([sys.executable, "-m", "mobilenets.cli", "bench", "faces", "--rounds", "1", "--format",
                           "json"], capture_output=True, text=True, check=True)
    (table,) = json.loads(done.stdout[done.stdout.index("["):])
    rows = table["rows"]
    assert [row[4] for row in rows] == ["1 / 1", "3 / 3"] and all(float(row[5]) < 6 for row in rows), rows
