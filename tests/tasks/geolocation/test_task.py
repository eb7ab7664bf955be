"""Haversine, the geolocation task through the CLI, Table 11, bad CSV rows, and learning beyond the baseline."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import logged_metrics
from PIL import Image

from mobilenets.cli import main
from mobilenets.tasks.geolocation import table11
from mobilenets.tasks.geolocation.data import read_geotagged_csv
from mobilenets.tasks.geolocation.metrics import GeolocationAccuracy, haversine_km
from mobilenets.tasks.data.images import BadRecordError

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("a,b,km", [
    ((51.5074, -0.1278), (48.8566, 2.3522), 343.5),    # London - Paris
    ((40.7128, -74.0060), (34.0522, -118.2437), 3935.7),  # New York - Los Angeles
    ((-33.8688, 151.2093), (35.6762, 139.6503), 7823.0),  # Sydney - Tokyo
    ((0.0, 179.5), (0.0, -179.5), 111.2),               # across the antimeridian
])
def test_haversine_known_distances(a, b, km):
    distance = haversine_km(torch.tensor([a[0]]), torch.tensor([a[1]]), torch.tensor([b[0]]), torch.tensor([b[1]]))
    assert distance.item() == pytest.approx(km, rel=2e-3)


def test_accuracy_scales():
    metric = GeolocationAccuracy()
    metric.update(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0]),
                  torch.tensor([0.0, 1.0, 30.0]), torch.tensor([0.0, 0.0, 0.0]))  # 0 km, 111 km, 3336 km
    result = metric.compute()
    assert result["acc_1km"].item() == pytest.approx(1 / 3) and result["acc_200km"].item() == pytest.approx(2 / 3)
    assert result["acc_2500km"].item() == pytest.approx(2 / 3) and result["median_km"].item() == pytest.approx(111.19, 0.01)


def test_table11_row():
    row = table11().rows[0]
    assert row[-1] == "yes" and row[2] == "577.5" and row[4] == "13.000"


def test_bad_csv_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("IMG_ID,LAT,LON\na,10,20\nb,north,20\nc,10,200\n")
    with pytest.raises(ValueError, match=r"train\.csv row 1: coordinate \(nan, 20\.0\)"):
        read_geotagged_csv(path, ("IMG_ID", "LAT", "LON"))
    ids, lat, lon, skipped = read_geotagged_csv(path, ("IMG_ID", "LAT", "LON"), skip_bad=True)
    assert ids == ["a"] and len(skipped) == 2
    with pytest.raises(BadRecordError, match=r"missing columns \['latitude'\]"):
        read_geotagged_csv(path, ("IMG_ID", "latitude", "LON"))


def test_partition_fit_test_predict_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "geolocation", "geo", "--option", "num_images=120", "--option", "num_regions=4"]) == 0
    assert main(["partition", "geo/train.csv", "--output", "geo", "--thresholds", "40,5", "--max-level", "8"]) == 0
    with open("geo/partition_t1-40_t2-5.csv") as handle:
        cells = len(list(csv.DictReader(handle)))
    common = ["--model", "GeolocationTask", "--model.num_cells", str(cells), "--model.backbone.alpha", "0.25",
              "--model.resolution", "32", "--data", "GeoDataModule", "--data.root", "geo", "--data.t1", "40",
              "--data.t2", "5", "--data.batch_size", "8", "--data.num_workers", "0",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "run",
              "--trainer.log_every_n_steps", "1"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    (checkpoint,) = Path("run").rglob("best-epoch=*.ckpt")
    keys = set().union(*(row.keys() for row in logged_metrics(Path("run"))))
    assert {"train/loss", "val/acc_1km", "val/acc_25km", "val/acc_200km", "val/acc_750km", "val/acc_2500km",
            "val/median_km"} <= keys
    main(["test", *common, "--ckpt_path", str(checkpoint)])
    assert any(row.get("test/acc_2500km") for row in logged_metrics(Path("run")))
    main(["predict", *common, "--ckpt_path", str(checkpoint), "--predictions.output_file", "predictions.csv",
          "--trainer.callbacks+=DrawGeoPredictions", "--trainer.callbacks.output_dir", "maps"])
    rows = list(csv.DictReader(open("predictions.csv")))
    assert len(rows) == 18 and {"file", "lat", "lon", "cell_1", "prob_1"} <= set(rows[0])
    assert -90 <= float(rows[0]["lat"]) <= 90
    assert len(list(Path("maps").glob("*.png"))) == 18


@pytest.mark.slow
def test_demo_config_beats_the_most_populous_cell(tmp_path, monkeypatch):
    """The demo config, run for 8 of its 15 epochs (the suite's time budget), against always answering the most
    populous cell's mean location."""
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "demo" / "geolocation.yaml")
    main(["fit", "--config", config, "--trainer.max_epochs", "8", "--trainer.enable_progress_bar", "false"])
    (checkpoint,) = (tmp_path / "runs").rglob("last.ckpt")
    main(["test", "--config", config, "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar", "false"])
    result = [row for row in logged_metrics(tmp_path / "runs") if row.get("test/acc_750km")][-1]
    from mobilenets.tasks.geolocation.partition import read_partition

    partition = read_partition(next((tmp_path / "data" / "demo" / "geo").glob("partition_*.csv")))
    top = int(np.argmax(partition.counts))
    _, lat, lon, _ = read_geotagged_csv(tmp_path / "data" / "demo" / "geo" / "test.csv", ("IMG_ID", "LAT", "LON"))
    baseline = GeolocationAccuracy()
    baseline.update(torch.full((len(lat),), partition.lat_mean[top]), torch.full((len(lat),), partition.lon_mean[top]),
                    torch.as_tensor(lat), torch.as_tensor(lon))
    base = baseline.compute()
    for scale in ("acc_750km", "acc_2500km"):
        assert float(result[f"test/{scale}"]) > base[scale].item() + 0.15, (scale, result, base)


def test_hierarchical_scores_by_hand():
    from mobilenets.tasks.geolocation import GeolocationTask

    task = GeolocationTask(num_cells=3, coarser_cells=[2], resolution=32)
    task.parents[0] = torch.tensor([0, 0, 1])  # finest cells 0 and 1 lie in coarse cell 0, cell 2 in coarse cell 1
    logits = torch.tensor([[0.0, 2.0, 1.0, 1.0, 0.0]])  # coarse logits (0, 2), fine logits (1, 1, 0)
    coarse = torch.tensor([0.0, 2.0]).log_softmax(0)
    fine = torch.tensor([1.0, 1.0, 0.0]).log_softmax(0)
    expected = torch.stack([fine[0] + coarse[0], fine[1] + coarse[0], fine[2] + coarse[1]])
    assert torch.allclose(task.finest_scores(logits)[0], expected)
    assert task.finest_scores(logits).argmax().item() == 2  # the coarse level overrules the fine one
    loss = task._loss(logits, torch.tensor([[1, 2]]))
    assert loss.item() == pytest.approx(-(coarse[1] + fine[2]).item(), rel=1e-6)


def test_hierarchical_levels_from_data_to_training(tmp_path):
    import pytorch_lightning as pl

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.geolocation import GeoDataModule, GeolocationTask

    data = GeoDataModule(str(tmp_path / "geo"), synthetic=True, synthetic_options={"num_images": 160, "num_regions": 5},
                         t1=20, t2=3, coarser=[(60, 3)], max_level=9, resolution=32, batch_size=16, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    coarse, fine = data.num_cells
    assert coarse < fine and len(data.partition_paths) == 2 and all(p.is_file() for p in data.partition_paths)
    label = data.datasets["train"][0]["label"]
    assert label.shape == (4,) and label[3] >= 0  # lat, lon, coarse cell, finest cell
    parents = data.parent_indices()[0]
    task = GeolocationTask(num_cells=fine, coarser_cells=[coarse], backbone=BackboneConfig(alpha=0.25), resolution=32)
    pl.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False).fit(task, data)
    assert task.parents[0].tolist() == parents.tolist() and task.model.head.out_features == coarse + fine
    with pytest.raises(ValueError, match="coarser partitions need t1 above the finest"):
        GeoDataModule(str(tmp_path / "geo"), t1=20, coarser=[(10, 3)])


def test_geoestimation_csvs_as_published(tmp_path, caplog):
    """MP-16 / Im2GPS CSVs (GeoEstimation's meta files) name images by their path below the image folder, extension
    and sub-folders included; MP-16 comes without a validation CSV, so one is held out of training and logged."""
    from mobilenets.tasks.geolocation import GeoDataModule

    header = "IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,S365_Label,Prob_indoor,Prob_natural,Prob_urban\n"
    test_rows = ["104123223_7410c654ba_19_19355699@N00.jpg,19355699@N00,-16.663606,145.563537,1,8,150,0.003,0.778,0.219",
                 "1095548455_f636d22cbb_1277_8576809@N08.jpg,8576809@N08,31.893581,-85.141124,2,15,231,0.004,0.016,0.98"]
    train_rows = [f"{i % 7:02x}/{i % 5:02x}/{1000 + i}.jpg,a@N00,{10 * (i % 5) + 0.001 * i},{20 * (i % 5)},1,1,1,0.1,0.1,"
                  f"0.8" for i in range(100)]  # five places of 20 photos each
    (tmp_path / "mp16.csv").write_text(header + "\n".join(train_rows) + "\n")
    (tmp_path / "im2gps.csv").write_text(header + "\n".join(test_rows) + "\n")
    for row in train_rows + test_rows:
        image = tmp_path / "images" / row.split(",")[0]
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(image)
    data = GeoDataModule(str(tmp_path), train_csv="mp16.csv", test_csv="im2gps.csv", t1=40, t2=5, max_level=6,
                         val_fraction=0.2)
    data.prepare_data()
    with caplog.at_level("INFO", logger="mobilenets"):
        splits = data.read_splits()
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (80, 20, 2)
    assert splits["test"][0].path == tmp_path / "images" / "104123223_7410c654ba_19_19355699@N00.jpg"
    assert "no " in caplog.text and "held out 20 of mp16.csv's 100 photos" in caplog.text
    assert GeoDataModule(str(tmp_path), image_suffix=".png").image_path("a.jpg") == tmp_path / "images" / "a.jpg.png"


def test_csv_saved_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbfIMG_ID,LAT,LON\r\na.jpg,10,20\r\nb.jpg,-5,30\r\n")  # Excel's "CSV UTF-8"
    ids, lat, lon, skipped = read_geotagged_csv(path, ("IMG_ID", "LAT", "LON"))
    assert ids == ["a.jpg", "b.jpg"] and lat.tolist() == [10, -5] and lon.tolist() == [20, 30] and skipped == []


def test_five_crop_testing(tmp_path):
    """``test_crops: 5``: each test photo comes as torchvision's five crops; the task averages their probabilities,
    which for five identical crops is the single crop's prediction."""
    from torchvision.transforms.v2 import functional as TF

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.geolocation import GeoDataModule, GeolocationTask

    data = GeoDataModule(str(tmp_path / "geo"), synthetic=True, synthetic_options={"num_images": 60, "num_regions": 3},
                         t1=30, t2=3, max_level=8, resolution=32, test_crops=5, num_workers=0)
    data.prepare_data()
    data.setup("test")
    sample = data.datasets["test"][0]
    assert sample["image"].shape == (5, 3, 32, 32) and data.datasets["val"][0]["image"].shape == (3, 32, 32)
    resized = TF.resize(TF.pil_to_tensor(Image.open(sample["file"]).convert("RGB")), 37, antialias=True)
    assert torch.allclose(sample["image"][4], TF.center_crop(resized, 32).float() / 255, atol=1e-6)
    task = GeolocationTask(num_cells=len(data.partition), backbone=BackboneConfig(alpha=0.25), resolution=32).eval()
    single = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        averaged = task._crop_average(single[:, None].expand(2, 5, 3, 32, 32))
        assert torch.allclose(averaged, task.model(single).log_softmax(dim=1), atol=1e-5)
    import pytorch_lightning as pl

    (metrics,) = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path).test(
        task, data, verbose=False)  # through Lightning: normalisation, the loss and the metric on (N, 5, ...) batches
    assert 0 <= metrics["test/acc_2500km"] <= 1 and "test/loss" in metrics
    with pytest.raises(ValueError, match="test_crops must be 1 or 5"):
        GeoDataModule(str(tmp_path / "geo"), test_crops=3)


def test_five_crop_testing_takes_the_configured_crop_fraction(tmp_path):
    """``augmentation.eval_crop_fraction`` sets the five crops' resize too: 32-px crops of a short side of 64."""
    from torchvision.transforms.v2 import functional as TF

    from mobilenets.tasks.geolocation import GeoDataModule

    data = GeoDataModule(str(tmp_path / "geo"), synthetic=True, synthetic_options={"num_images": 30, "num_regions": 3},
                         t1=30, t2=3, max_level=8, resolution=32, test_crops=5, num_workers=0,
                         augmentation={"eval_crop_fraction": 0.5})
    data.prepare_data()
    data.setup("test")
    sample = data.datasets["test"][0]
    resized = TF.resize(TF.pil_to_tensor(Image.open(sample["file"]).convert("RGB")), 64, antialias=True)
    assert torch.allclose(sample["image"][4], TF.center_crop(resized, 32).float() / 255, atol=1e-6)
    assert torch.allclose(sample["image"][0], resized[:, :32, :32].float() / 255, atol=1e-6)


def test_several_test_sets_and_per_level_metrics(tmp_path):
    """``test_csv`` as a list (Im2GPS and Im2GPS3k): each set is tested on its own, with the same numbers as a run
    on that CSV alone; with a coarser level, each level's own prediction is scored too, by hand here from the
    partition files' cell means."""
    import pytorch_lightning as pl

    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.geolocation import GeoDataModule, GeolocationTask

    root = tmp_path / "geo"
    options = dict(t1=20, t2=3, coarser=[(60, 3)], max_level=9, resolution=32, batch_size=16, num_workers=0)
    GeoDataModule(str(root), synthetic=True, synthetic_options={"num_images": 160, "num_regions": 5},
                  **options).prepare_data()
    rows = (root / "test.csv").read_text().splitlines()
    (root / "im2gps3k.csv").write_text("\n".join(rows[:1] + rows[1::3]) + "\n")
    data = GeoDataModule(str(root), test_csv=["test.csv", "im2gps3k.csv"], **options)
    data.setup("fit")
    task = GeolocationTask(num_cells=data.num_cells[-1], coarser_cells=data.num_cells[:-1],
                           backbone=BackboneConfig(alpha=0.25), resolution=32)
    per_loader = pl.Trainer(logger=False, enable_progress_bar=False).test(task, data, verbose=False)
    assert data.test_names == ["test", "im2gps3k"] and len(per_loader) == 2
    both = {name: value for results in per_loader for name, value in results.items()}
    for name in ("test", "im2gps3k"):
        (alone,) = pl.Trainer(logger=False, enable_progress_bar=False).test(
            task, GeoDataModule(str(root), test_csv=f"{name}.csv", **options), verbose=False)
        assert {k: both[f"test/{name}/{k[5:]}"] for k in alone} == pytest.approx(alone, abs=1e-6)
        assert f"test/{name}/level_0/acc_2500km" in both and f"test/{name}/level_1/median_km" in both

    task.eval()
    images = torch.stack([sample["image"] for sample in data.datasets["test"]])
    labels = torch.stack([sample["label"] for sample in data.datasets["test"]])
    with torch.no_grad():
        levels = task.model(task.backbone.normalize(images)).split(data.num_cells, dim=1)
    for k, (partition, logits) in enumerate(zip(data.partitions, levels)):
        cell = logits.argmax(dim=1).numpy()
        errors = haversine_km(torch.as_tensor(partition.lat_mean[cell]), torch.as_tensor(partition.lon_mean[cell]),
                              labels[:, 0], labels[:, 1])
        assert both[f"test/test/level_{k}/acc_750km"] == pytest.approx((errors <= 750).double().mean().item())
        assert both[f"test/test/level_{k}/median_km"] == pytest.approx(errors.median().item(), rel=1e-5)
    with pytest.raises(ValueError, match="test_csv must name one or more files with distinct names"):
        GeoDataModule(str(root), test_csv=["a/test.csv", "b/test.csv"])
