"""LFW pairs.txt parsing (both headers), identity folders, P x K batches, bad input."""

import logging
import shutil

import pytest

from mobilenets.tasks.face_embedding.data import FaceIdentityDataModule, read_identity_folders, read_pairs
from mobilenets.tasks.face_embedding.synthetic import write_faces
from mobilenets.tasks.data.images import BadRecordError

SMALL = dict(train_identities=6, train_images=4, test_identities=20, test_images=3, pairs_per_fold=2)


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("faces"), **SMALL)


def _lfw(tmp_path, faces_root, pairs_text):
    root = tmp_path / "lfw_copy"
    if not root.exists():
        shutil.copytree(faces_root, root)
    (root / "pairs.txt").write_text(pairs_text)
    return root


def test_real_lfw_format(faces_root, tmp_path):
    # LFW's own lines: tab-separated, header "<folds>\t<pairs per fold>", matched then mismatched per fold
    text = "2\t1\nTest_Person_0000\t1\t2\nTest_Person_0000\t1\tTest_Person_0001\t3\n" \
           "Test_Person_0002\t2\t3\nTest_Person_0002\t1\tTest_Person_0003\t1\n"
    root = _lfw(tmp_path, faces_root, text)
    pairs, skipped = read_pairs(root / "pairs.txt", root / "lfw")
    assert skipped == [] and [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[0].first.name == "Test_Person_0000_0001.jpg" and pairs[0].second.name == "Test_Person_0000_0002.jpg"
    assert pairs[1].second.name == "Test_Person_0001_0003.jpg" and pairs[3].source == "pairs.txt:5"


def test_single_set_header(faces_root, tmp_path):
    root = _lfw(tmp_path, faces_root, "1\nTest_Person_0000\t1\t2\nTest_Person_0000\t1\tTest_Person_0001\t3\n")
    pairs, _ = read_pairs(root / "pairs.txt", root / "lfw")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0)]


def test_synthetic_pairs_file_has_ten_folds(faces_root):
    pairs, _ = read_pairs(faces_root / "pairs.txt", faces_root / "lfw")
    assert (faces_root / "pairs.txt").read_text().splitlines()[0] == "10\t2"
    assert len(pairs) == 40 and sorted({p.fold for p in pairs}) == list(range(10))
    assert sum(p.same for p in pairs) == 20


def test_bad_pair_lines(faces_root, tmp_path):
    root = _lfw(tmp_path, faces_root, "1\t1\nTest_Person_0000\t1\nTest_Person_0000\t1\tTest_Person_0001\t3\n")
    with pytest.raises(BadRecordError, match=r"pairs\.txt:2: expected 3 fields \(matched 'name n1 n2'\), got 2"):
        read_pairs(root / "pairs.txt", root / "lfw")
    (root / "pairs.txt").write_text("1\t1\nTest_Person_0000\t1\t9\nTest_Person_0000\t1\tTest_Person_0001\t3\n")
    with pytest.raises(BadRecordError, match=r"Test_Person_0000_0009\.jpg \(pairs\.txt:2\): image file not found"):
        read_pairs(root / "pairs.txt", root / "lfw")
    pairs, skipped = read_pairs(root / "pairs.txt", root / "lfw", skip_bad=True)
    assert len(pairs) == 1 and len(skipped) == 1
    (root / "pairs.txt").write_text("1\t2\nTest_Person_0000\t1\t2\n")
    with pytest.raises(BadRecordError, match="header announces 4 pairs, file has 1"):
        read_pairs(root / "pairs.txt", root / "lfw")


def test_identity_folders_and_their_problems(faces_root, tmp_path, caplog):
    records, names = read_identity_folders(faces_root / "train")
    assert len(names) == 6 and len(records) == 24
    root = shutil.copytree(faces_root, tmp_path / "ids")
    (root / "train" / "Nobody").mkdir()
    with pytest.raises(BadRecordError, match=r"identity folders without any image: \['Nobody'\]"):
        read_identity_folders(root / "train")
    shutil.rmtree(root / "train" / "Nobody")
    for image in sorted((root / "train" / "Train_Person_0000").iterdir())[1:]:
        image.unlink()  # one image left: no positive possible
    (sorted((root / "train" / "Train_Person_0001").iterdir())[0]).unlink()  # three left: fewer than K=4
    data = FaceIdentityDataModule(str(root), resolution=32, batch_size=8, images_per_identity=4, num_workers=0)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    assert len(data.datasets["train"]) == 23 - 3 - 1  # the single-image identity is left out, and said so
    assert "1 identities have a single image" in caplog.text and "1 identities have fewer than 4 images" in caplog.text


def test_pk_batches(faces_root):
    data = FaceIdentityDataModule(str(faces_root), resolution=32, batch_size=8, images_per_identity=4, num_workers=0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    counts = batch["label"].unique(return_counts=True)[1]
    assert batch["image"].shape == (8, 3, 32, 32) and counts.tolist() == [4, 4]  # P=2 identities x K=4
    assert len(data.datasets["val"]) == len({p for pair in data.pair_sets[0].pairs for p in (pair.first, pair.second)})
    with pytest.raises(ValueError, match="images_per_identity must be >= 2 and divide batch_size"):
        FaceIdentityDataModule(str(faces_root), batch_size=10, images_per_identity=4)


def test_a_batch_larger_than_the_identities_says_what_fits(faces_root):
    data = FaceIdentityDataModule(str(faces_root), batch_size=32, images_per_identity=4, num_workers=0)
    data.setup("fit")
    with pytest.raises(ValueError, match=r"has 6 identities \(24 images\), fewer than one batch of 8 identities x 4 "
                                         r"images needs; lower data.init_args.batch_size to at most 24"):
        data.train_dataloader()


def test_pairs_file_saved_with_a_bom_and_crlf(faces_root, tmp_path):
    """A pairs file re-saved on Windows (UTF-8 BOM, CRLF line ends) reads like the original."""
    text = "2\t1\nTest_Person_0000\t1\t2\nTest_Person_0000\t1\tTest_Person_0001\t3\n" \
           "Test_Person_0002\t2\t3\nTest_Person_0002\t1\tTest_Person_0003\t1\n"
    root = _lfw(tmp_path, faces_root, text)
    original, _ = read_pairs(root / "pairs.txt", root / "lfw")
    (root / "pairs.txt").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read_pairs(root / "pairs.txt", root / "lfw") == (original, [])


def test_several_pair_sets_are_tested_each_on_its_own(faces_root, tmp_path):
    """``pairs_file`` as a list (LFW's 10-fold ``pairs.txt`` and its single-set ``pairsDevTest.txt``): validation
    uses the first; each set is tested on its own, with the numbers a run on that file alone gives."""
    import pytorch_lightning as pl

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.face_embedding import FaceEmbeddingTask

    lines = (faces_root / "pairs.txt").read_text().splitlines()
    matched, mismatched = lines[1:3], lines[3:5]  # fold 1: 2 matched, then 2 mismatched (pairs_per_fold 2)
    root = _lfw(tmp_path, faces_root, "\n".join(lines) + "\n")
    (root / "pairsDevTest.txt").write_text("\n".join(["2", *matched, *mismatched]) + "\n")
    options = dict(resolution=32, batch_size=8, num_workers=0)
    data = FaceIdentityDataModule(str(root), pairs_file=["pairs.txt", "pairsDevTest.txt"], **options)
    task = FaceEmbeddingTask(embedding_dim=8, backbone=BackboneConfig(alpha=0.25), resolution=32)
    per_loader = pl.Trainer(logger=False, enable_progress_bar=False).test(task, data, verbose=False)
    both = {name: value for results in per_loader for name, value in results.items()}
    assert data.test_names == ["pairs", "pairsDevTest"] and len(data.datasets["val"]) == len(data.datasets["test/pairs"])
    assert both["test/pairs/pairs"] == len(lines) - 1 and both["test/pairsDevTest/pairs"] == 4
    for name in data.test_names:
        (alone,) = pl.Trainer(logger=False, enable_progress_bar=False).test(
            task, FaceIdentityDataModule(str(root), pairs_file=f"{name}.txt", **options), verbose=False)
        assert {key: both[f"test/{name}/{key[5:]}"] for key in alone} == pytest.approx(alone, nan_ok=True)
    with pytest.raises(ValueError, match="pairs_file must name one or more files with distinct names"):
        FaceIdentityDataModule(str(root), pairs_file=["pairs.txt", "other/pairs.txt"])
