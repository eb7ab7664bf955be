"""``mobilenets bench detection-train``: every row trains the same steps on the same data and is scored."""

import json

import yaml

from mobilenets.cli import main
from mobilenets.configs import config_path


def test_detection_training_benchmark_rows(tmp_path, capsys):
    config = yaml.safe_load(config_path("demo/detection.yaml").read_text())
    config["data"]["init_args"]["synthetic_options"] = {"train_images": 8, "val_images": 4, "image_size": 96}
    config["data"]["init_args"]["batch_size"] = 4
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    assert main(["bench", "detection-train", "--config", str(tmp_path / "tiny.yaml"), "--steps", "2",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [row["name"] for row in rows] == [
        "SSD300 MobileNet (ours)", "SSDLite MobileNet (ours)", "torchvision SSDLite recipe on MobileNet v1",
        "torchvision ssdlite320_mobilenet_v3_large",
        "torchvision SSDLite head on MobileNet v1, our optimizer and augmentation"]
    for row in rows:
        assert {"name", "steps", "seconds", "mAP", "mAP50"} <= set(row) and row["steps"] == 2
        assert row["seconds"] > 0 and 0 <= row["mAP"] <= row["mAP50"] <= 1
