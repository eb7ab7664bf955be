"""Verification and identification metrics against plain references of the protocols, semi-hard mining, Table 14,
CLI (fit, test with a gallery, predict, verify, gallery build, identify), learning."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import logged_metrics
from pytorch_metric_learning import distances, miners

from mobilenets.backbone import MobileNetV1, profile_model
from mobilenets.backbone.profile import agrees
from mobilenets.cli import main
from mobilenets.tasks.face_embedding import FaceEmbeddingTask, table14
from mobilenets.tasks.face_embedding.metrics import (
    enrol,
    far_threshold,
    identification_metrics,
    tar_at_far,
    verification_metrics,
)
from mobilenets.tasks.face_embedding.task import count_valid_triplets

REPO = Path(__file__).resolve().parents[3]


def reference_protocol(distances_, same, folds, thresholds, val_far):
    """The LFW protocol written plainly, pair by pair and threshold by threshold."""
    accuracies, vals = [], []
    for fold in sorted(set(folds)):
        train = [i for i in range(len(same)) if folds[i] != fold]
        test = [i for i in range(len(same)) if folds[i] == fold]
        best_threshold, best_accuracy = None, -1.0
        for t in thresholds:
            accuracy = sum((distances_[i] < t) == same[i] for i in train) / len(train)
            if accuracy > best_accuracy:
                best_threshold, best_accuracy = t, accuracy
        accuracies.append(sum((distances_[i] < best_threshold) == same[i] for i in test) / len(test))
        val_threshold = thresholds[0]
        negatives = [i for i in train if not same[i]]
        for t in thresholds:
            if sum(distances_[i] < t for i in negatives) / len(negatives) <= val_far:
                val_threshold = t
        positives = [i for i in test if same[i]]
        vals.append(sum(distances_[i] < val_threshold for i in positives) / len(positives))
    return np.mean(accuracies), np.mean(vals)


def synthetic_pairs(seed: int, per_fold: int, spread: float, different: float):
    """10 LFW-style folds of ``per_fold`` matched then ``per_fold`` mismatched pairs: (distances, same, folds)."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.repeat([True, False], per_fold), 10)
    size = len(same)
    distances_ = np.where(same, rng.normal(1.0, spread, size), rng.normal(different, spread, size)).clip(0, 4)
    return distances_, same, np.repeat(np.arange(10), 2 * per_fold)


def test_metrics_equal_the_reference():
    distances_, same, folds = synthetic_pairs(0, 15, 0.35, 1.8)
    thresholds = np.arange(0, 4, 0.01)
    ours = verification_metrics(distances_, same, folds, thresholds=thresholds, val_far=0.1, val_threshold_rule="grid")
    accuracy, val = reference_protocol(distances_, same, folds, thresholds, val_far=0.1)
    assert ours["accuracy"] == pytest.approx(accuracy) and ours["val"] == pytest.approx(val)
    from sklearn.metrics import roc_auc_score

    assert ours["auc"] == pytest.approx(roc_auc_score(same, -distances_)) and ours["pairs"] == 300


def facenet_val(distances_, same, thresholds, far_target, folds=10):
    """FaceNet's ``calculate_val`` (its LFW evaluation), written after its published code: KFold without shuffle,
    the FAR curve on the training folds, the threshold interpolated on it at the target. FaceNet's
    ``interp1d(kind="slinear")`` refuses the curve's repeated FARs in modern scipy; ``kind="linear"`` computes the
    same line between them where the target is not itself one of the curve's FARs."""
    from scipy.interpolate import interp1d
    from sklearn.model_selection import KFold

    vals, fars = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(same))):
        far_train = np.array([(distances_[train][~same[train]] < t).mean() for t in thresholds])
        threshold = interp1d(far_train, thresholds, kind="linear")(far_target) if far_train.max() >= far_target else 0.0
        accepted = distances_[test] < threshold
        vals.append(accepted[same[test]].mean())
        fars.append(accepted[~same[test]].mean())
    return np.mean(vals), np.mean(fars)


def test_val_at_far_follows_facenets_published_protocol():
    """VAL@FAR by default interpolates the threshold as FaceNet's LFW evaluation does; ``grid`` stays a choice."""
    distances_, same, folds = synthetic_pairs(1, 30, 0.4, 1.9)
    thresholds = np.arange(0, 4, 0.05)  # a coarse grid, where interpolating matters
    for far_target in (0.01, 0.05, 0.13):  # 270 training negatives: never exactly one of the curve's FARs
        val, far = facenet_val(distances_, same, thresholds, far_target)
        ours = verification_metrics(distances_, same, folds, thresholds=thresholds, val_far=far_target)
        assert ours["val"] == pytest.approx(val, abs=1e-12) and ours["far"] == pytest.approx(far, abs=1e-12)
        grid = verification_metrics(distances_, same, folds, thresholds=thresholds, val_far=far_target,
                                    val_threshold_rule="grid")
        assert grid["val"] < ours["val"] and grid["accuracy"] == ours["accuracy"]


def test_far_threshold_rules_at_runs_and_ends():
    far = np.array([0.0, 0.0, 0.1, 0.1, 0.1, 0.3, 0.5])
    thresholds = np.arange(7) * 0.5
    assert far_threshold(far, thresholds, 0.2, "interpolated") == pytest.approx(2.25)  # from 2.0 (last 0.1) to 2.5
    assert far_threshold(far, thresholds, 0.1, "interpolated") == 2.0  # on a run: its largest threshold
    assert far_threshold(far, thresholds, 0.05, "interpolated") == pytest.approx(0.75)  # 0.5 (last 0.0) to 1.0
    assert far_threshold(far, thresholds, 0.6, "interpolated") == 0.0  # never reached: FaceNet's threshold 0
    assert far_threshold(far, thresholds, 0.2, "grid") == 2.0 and far_threshold(far, thresholds, 0.6, "grid") == 3.0


def test_tar_at_far_refuses_what_the_pairs_cannot_resolve():
    same = np.array([True] * 3000 + [False] * 3000)  # LFW: 3,000 negatives resolve FAR >= 1/3000 only
    distances_ = np.concatenate([np.full(3000, 0.5), np.linspace(1, 3, 3000)])
    tar, smallest = tar_at_far(distances_, same, 1e-4)
    assert tar is None and smallest == pytest.approx(1 / 3000)
    tar, _ = tar_at_far(distances_, same, 1e-3)  # 3 false accepts allowed: threshold at the 4th negative
    assert tar == 1.0
    tar, _ = tar_at_far(np.array([0.2, 0.6, 0.4, 0.5]), np.array([True, True, False, False]), 0.5)
    assert tar == 0.5  # one false accept allowed: accept d < 0.5, so 0.2 yes, 0.6 no


def test_identification_metrics_equal_a_plain_reference():
    """Rank-1 equals scikit-learn's 1-nearest-neighbour classifier over the enrolled templates; DIR at FAR equals
    a scan over every threshold the impostors allow."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(15, 16))
    gallery_ids = [f"id{i}" for i in range(10) for _ in range(3)]
    gallery = np.stack([centres[int(name[2:])] + rng.normal(scale=0.8, size=16) for name in gallery_ids])
    probe_ids = [f"id{i}" for i in rng.integers(0, 15, size=600)]  # id10 to id14: impostors
    probes = np.stack([centres[int(name[2:])] + rng.normal(scale=0.8, size=16) for name in probe_ids])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    results = identification_metrics(gallery, gallery_ids, probes, probe_ids, fars=(0.01, 0.1, 0.001))

    names, templates = enrol(gallery, gallery_ids)
    mated = np.array([name in names for name in probe_ids])
    knn = KNeighborsClassifier(n_neighbors=1).fit(templates, names)
    correct = knn.predict(probes) == np.array(probe_ids)
    assert results["rank1"] == pytest.approx(correct[mated].mean())
    assert (results["mated"], results["impostors"], results["identities"]) == (mated.sum(), (~mated).sum(), 10)
    nearest = knn.kneighbors(probes, 1)[0][:, 0] ** 2  # squared L2, as the task measures
    for far in (0.01, 0.1):
        allowed = [t for t in np.append(np.unique(nearest[~mated]), np.inf) if (nearest[~mated] < t).mean() <= far]
        threshold = max(allowed)
        assert results[f"dir_at_far{far:g}"] == pytest.approx((correct & (nearest < threshold))[mated].mean())
    assert results["dir_at_far0.001"] is None  # fewer than 1000 impostors cannot resolve it
    assert 0 < results["dir_at_far0.01"] < results["dir_at_far0.1"] < results["rank1"] <= 1
    with pytest.raises(ValueError, match="no probe's identity is in the gallery"):
        identification_metrics(gallery, gallery_ids, probes[:2], ["x", "y"])


def test_semi_hard_miner_picks_only_semi_hard_negatives():
    # anchors at the origin's neighbourhood on a circle; distances known by construction
    angles = torch.tensor([0.0, 0.3, 0.45, 0.8, 1.6, 2.0])
    embeddings = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    squared = distances.LpDistance(p=2, power=2, normalize_embeddings=True)
    anchors, positives, negatives = miners.TripletMarginMiner(
        margin=0.2, type_of_triplets="semihard", distance=squared)(embeddings, labels)
    assert len(anchors) > 0
    d = torch.cdist(embeddings, embeddings) ** 2
    for a, p, n in zip(anchors, positives, negatives):
        assert labels[a] == labels[p] != labels[n]
        assert d[a, p] < d[a, n] <= d[a, p] + 0.2  # semi-hard: farther than the positive, within the margin


def test_count_valid_triplets():
    assert count_valid_triplets(torch.tensor([0, 0, 1, 1])) == 4 * 1 * 2
    assert count_valid_triplets(torch.tensor([0, 0, 0, 1])) == 3 * 2 * 1


def test_table14_rows_and_notes():
    marks = [row[-1] for row in table14().rows]
    assert all(mark.startswith("no, see") for mark in marks)  # the paper's counts include an undescribed head
    assert agrees(profile_model(MobileNetV1(alpha=0.75, num_classes=128), 160).macs / 1e6, "166")
    assert int(profile_model(MobileNetV1(alpha=1.0, num_classes=128), 128).macs / 1e6) == 185


def test_arcface_needs_identities():
    with pytest.raises(ValueError, match="set num_identities"):
        FaceEmbeddingTask(loss="arcface")
    task = FaceEmbeddingTask(loss="arcface", num_identities=5, resolution=64)
    images = task.backbone.normalize(torch.rand(4, 3, 64, 64))
    loss = task.loss_fn(task(images), torch.tensor([0, 1, 2, 3]))
    assert loss.item() > 0 and any(p is task.loss_fn.W for p in task.parameters())


def test_fit_test_predict_verify_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "face_embedding", "faces", "--option", "train_identities=6", "--option",
                 "train_images=4", "--option", "test_identities=20", "--option", "test_images=3",
                 "--option", "pairs_per_fold=2"]) == 0
    common = ["--model", "FaceEmbeddingTask", "--model.backbone.alpha", "0.25", "--model.resolution", "64",
              "--data", "FaceIdentityDataModule", "--data.root", "faces", "--data.batch_size", "8",
              "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", "run", "--trainer.log_every_n_steps", "1"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    (checkpoint,) = Path("run").rglob("best-epoch=*.ckpt")
    keys = set().union(*(row.keys() for row in logged_metrics(Path("run"))))
    assert {"train/loss", "train/active_triplets", "val/accuracy", "val/val", "val/auc", "val/pairs"} <= keys
    assert "val/tar_at_far" not in keys  # 20 negatives cannot resolve FAR 1e-4
    main(["test", *common, "--ckpt_path", str(checkpoint)])
    test_row = [row for row in logged_metrics(Path("run")) if row.get("test/accuracy")][-1]
    assert float(test_row["test/pairs"]) == 40 and float(test_row["test/smallest_far"]) == pytest.approx(0.05)
    main(["predict", *common, "--ckpt_path", str(checkpoint), "--predictions.output_file", "embeddings.csv"])
    rows = list(csv.DictReader(open("embeddings.csv")))
    vectors = np.array([[float(row[f"e{i}"]) for i in range(128)] for row in rows])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    capsys.readouterr()
    image = "faces/lfw/Test_Person_0000/Test_Person_0000_0001.jpg"
    assert main(["verify", image, image, "--ckpt", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "squared distance 0.0000" in out and "same person" in out
    main(["verify", image, "faces/lfw/Test_Person_0001/Test_Person_0001_0001.jpg", "--ckpt", str(checkpoint),
          "--threshold", "-1"])
    assert "different people" in capsys.readouterr().out

    # open-set identification in test: 8 enrolled identities (images 1-2), probes of them (image 3) and of 10 others
    for number, person in enumerate(sorted(Path("faces/lfw").iterdir())[:18]):
        for image_number in (1, 2, 3):
            role = "probes" if number >= 8 or image_number == 3 else "gallery"
            (Path("faces", role, person.name)).mkdir(parents=True, exist_ok=True)
            shutil.copy(person / f"{person.name}_{image_number:04d}.jpg", Path("faces", role, person.name))
    main(["test", *common, "--ckpt_path", str(checkpoint), "--data.gallery_dir", "gallery",
          "--data.probe_dir", "probes"])
    row = {k: v for r in logged_metrics(Path("run")) for k, v in r.items() if v and k.startswith("test/")}
    assert {"test/pairs/accuracy", "test/identification/rank1", "test/identification/dir_at_far0.1"} <= set(row)
    assert (float(row["test/identification/mated"]), float(row["test/identification/impostors"])) == (8, 30)
    assert "test/identification/dir_at_far0.01" not in row  # 30 impostors cannot resolve FAR 0.01

    # 1:N against a gallery file: an enrolled image finds itself; a far threshold makes everyone unknown
    main(["gallery", "build", "--ckpt", str(checkpoint), "--images", "faces/gallery", "--output", "people.npz",
          "--per-image"])
    assert "16 templates (one per image) of 8 identities from 16 images" in capsys.readouterr().out
    enrolled = sorted(Path("faces/gallery").rglob("*.jpg"))[5]
    main(["identify", str(enrolled), "--gallery", "people.npz", "--top-k", "3", "--format", "json"])
    (result,) = json.loads(capsys.readouterr().out)
    assert result["identity"] == enrolled.parent.name and result["matches"][0]["distance"] == pytest.approx(0, abs=1e-6)
    assert len(result["matches"]) == 3 and result["threshold"] == pytest.approx(float(row["test/pairs/threshold"]))
    main(["identify", str(enrolled), "--gallery", "people.npz", "--threshold", "0"])
    assert ": unknown (threshold 0.0000; nearest: " in capsys.readouterr().out
    main(["gallery", "build", "--ckpt", str(checkpoint), "--images", "faces/gallery", "--output", "mean.npz"])
    assert "8 templates (one per identity)" in capsys.readouterr().out

    other = Path("other.ckpt")
    state = torch.load(checkpoint, weights_only=False)
    state["epoch"] += 1
    torch.save(state, other)
    with pytest.raises(SystemExit, match="people.npz was built with .* not other.ckpt.*rebuild the gallery"):
        main(["identify", str(enrolled), "--gallery", "people.npz", "--ckpt", str(other)])
    Path("broken.npz").write_bytes(b"not a gallery")
    with pytest.raises(SystemExit, match="broken.npz: not a gallery file"):
        main(["identify", str(enrolled), "--gallery", "broken.npz"])

    # ordinary photos: found and aligned first (MTCNN); a gallery built aligned aligns its probes the same way
    from PIL import Image
    from skimage.data import astronaut

    Path("photos/eileen").mkdir(parents=True)
    photo = Image.fromarray(astronaut())
    photo.save("photos/eileen/portrait.jpg")
    scene = Image.new("RGB", (900, 700), (90, 120, 90))
    scene.paste(photo.resize((300, 300)), (500, 300))
    scene.save("photos/eileen/far.png")
    Image.new("RGB", (200, 200), (30, 30, 30)).save("empty.png")
    capsys.readouterr()
    main(["verify", "photos/eileen/portrait.jpg", "photos/eileen/far.png", "--ckpt", str(checkpoint), "--align"])
    assert "squared distance" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="empty.png: no face found"):
        main(["verify", "photos/eileen/portrait.jpg", "empty.png", "--ckpt", str(checkpoint), "--align"])
    main(["gallery", "build", "--ckpt", str(checkpoint), "--images", "photos", "--output", "photos.npz",
          "--per-image", "--align", "--method", "box"])
    capsys.readouterr()
    main(["identify", "photos/eileen/portrait.jpg", "empty.png", "--gallery", "photos.npz", "--format", "json"])
    found, faceless = json.loads(capsys.readouterr().out)
    assert found["identity"] == "eileen" and found["matches"][0]["distance"] == pytest.approx(0, abs=1e-6)
    assert faceless["verdict"] == "no face found" and faceless["matches"] == []


@pytest.mark.slow
def test_demo_config_learns_identities(tmp_path, monkeypatch, capsys):
    """The demo config, run for 8 of its 30 epochs (the suite's time budget): verification accuracy on unseen
    identities climbs above chance (0.5), and so does identifying them from a gallery (``gallery build``,
    ``identify``). Over seeds and CPUs (whose kernels give different trajectories), accuracy is 0.47 to 0.58 at
    epoch 1 and 0.645 to 0.76 by epoch 8, AUC 0.70 to 0.82: the bars (0.62, AUC 0.65) sit below the lowest of these."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs" / "demo" / "face_embedding.yaml"), "--trainer.max_epochs", "8",
          "--trainer.enable_progress_bar", "false"])
    rows = [row for row in logged_metrics(tmp_path / "runs") if row.get("val/accuracy")]
    accuracy = [float(row["val/accuracy"]) for row in rows]
    assert len(accuracy) == 8 and accuracy[0] < 0.6 and max(accuracy[-3:]) > 0.62, accuracy
    assert max(float(row["val/auc"]) for row in rows[-3:]) > 0.65

    # identification of unseen people: each of the 40 enrolled with 3 images, identified from a 4th
    for person in sorted(Path("data/demo/faces/lfw").iterdir()):
        (Path("gallery") / person.name).mkdir(parents=True)
        for number in (1, 2, 3):
            shutil.copy(person / f"{person.name}_{number:04d}.jpg", Path("gallery") / person.name)
    checkpoint = max(Path("runs").rglob("best-*.ckpt"), key=lambda path: path.stat().st_mtime)
    main(["gallery", "build", "--ckpt", str(checkpoint), "--images", "gallery", "--output", "people.npz"])
    probes = sorted(Path("data/demo/faces/lfw").rglob("*_0004.jpg"))
    capsys.readouterr()
    main(["identify", *map(str, probes), "--gallery", "people.npz", "--top-k", "5", "--format", "json"])
    results = json.loads(capsys.readouterr().out)
    rank1 = np.mean([r["matches"][0]["identity"] == Path(r["image"]).parent.name for r in results])
    rank5 = np.mean([Path(r["image"]).parent.name in [m["identity"] for m in r["matches"]] for r in results])
    # after these 8 epochs rank-1 is 0.025 to 0.050 and rank-5 0.175 to 0.425, depending on the CPU (after 14
    # epochs: 0.225 and 0.750); chance is 0.025 and 0.125
    assert rank5 > 0.125 and rank5 > rank1, (rank1, rank5)
