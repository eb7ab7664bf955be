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
    [table] = json.loads(capsys.readouterr().out)
    assert table["columns"] == ["model", "steps", "seconds", "mAP", "mAP50", "mAP50 / recipe on v1"]
    assert [row[0] for row in table["rows"]] == [
        "SSD300 MobileNet (ours)", "SSDLite MobileNet (ours)", "torchvision SSDLite recipe on MobileNet v1",
        "torchvision ssdlite320_mobilenet_v3_large",
        "torchvision SSDLite head on MobileNet v1, our optimizer and augmentation"]
    for _, steps, seconds, mean_ap, map50, _ in table["rows"]:
        assert steps == 2 and seconds > 0 and 0 <= float(mean_ap) <= float(map50) <= 1
