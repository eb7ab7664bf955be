"""COCO evaluation equals pycocotools; the detection task end to end through the CLI; learning."""

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
import torch
from helpers import logged_metrics
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.tasks.detection import CocoDataModule, DetectionTask
from mobilenets.tasks.detection.data import load_coco
from mobilenets.tasks.detection.metrics import STAT_NAMES, coco_evaluate, per_category_ap, run_cocoeval

REPO = Path(__file__).resolve().parents[3]

GROUND_TRUTH = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
               {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 60, 60], "area": 3600, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 9, "bbox": [70, 70, 20, 20], "area": 400, "iscrowd": 1},
    ],
    "categories": [{"id": 5, "name": "five"}, {"id": 9, "name": "nine"}],
}
DETECTIONS = [
    {"image_id": 1, "category_id": 5, "bbox": [12, 11, 28, 30], "score": 0.9},
    {"image_id": 1, "category_id": 9, "bbox": [48, 52, 40, 18], "score": 0.8},
    {"image_id": 1, "category_id": 5, "bbox": [60, 10, 20, 20], "score": 0.3},
    {"image_id": 2, "category_id": 5, "bbox": [5, 5, 50, 50], "score": 0.7},
    {"image_id": 2, "category_id": 9, "bbox": [71, 71, 19, 19], "score": 0.6},  # on the crowd region: ignored
]


def _pycocotools_directly(gt_path: Path, dt_path: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_path))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(dt_path)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def test_evaluate_coco_equals_pycocotools(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps(GROUND_TRUTH))
    (tmp_path / "dt.json").write_text(json.dumps(DETECTIONS))
    expected = _pycocotools_directly(tmp_path / "gt.json", tmp_path / "dt.json")
    ours = coco_evaluate(load_coco(tmp_path / "gt.json"), DETECTIONS)
    assert [ours[name] for name in STAT_NAMES] == pytest.approx(expected)
    assert 0 < ours["mAP"] < 1
    assert main(["evaluate-coco", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert [float(printed[name]) for name in STAT_NAMES] == pytest.approx(expected, abs=1e-4)


def test_per_category_ap_equals_cocoeval_on_each_category_alone(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(GROUND_TRUTH))
    ground_truth = load_coco(tmp_path / "gt.json")
    rows = per_category_ap(ground_truth, run_cocoeval(ground_truth, DETECTIONS))
    assert [(r["category_id"], r["name"]) for r in rows] == [(5, "five"), (9, "nine")]
    for row in rows:  # the reference: pycocotools evaluating one category
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(json.loads(json.dumps(DETECTIONS))), "bbox")
            evaluator.params.catIds = [row["category_id"]]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        assert (row["AP"], row["AP50"]) == pytest.approx((evaluator.stats[0], evaluator.stats[1]), abs=1e-9)
    assert 0 < rows[0]["AP"] < 1 and rows[1]["AP50"] == pytest.approx(1.0)
    assert [r["AP"] for r in per_category_ap(ground_truth, None)] == [0.0, 0.0]


def _detection_checkpoint(path: Path, **task_args) -> DetectionTask:
    task = DetectionTask(backbone=BackboneConfig(alpha=0.25), resolution=96, channels_last=False, **task_args)
    torch.save({"state_dict": task.state_dict()}, path)  # the part of a Lightning checkpoint fine-tuning reads
    return task


@pytest.mark.parametrize("lite", [False, True])
def test_fine_tuning_loads_all_but_the_class_predictor(tmp_path, lite, caplog):
    source = _detection_checkpoint(tmp_path / "coco.ckpt", num_classes=80, lite=lite, extra_depths=(32, 32, 32, 16))
    task = DetectionTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=96, lite=lite,
                         extra_depths=(32, 32, 32, 16), channels_last=False)
    fresh = {k: v.clone() for k, v in task.model.state_dict().items()}
    with caplog.at_level("INFO"):
        report = task.fine_tune_from(tmp_path / "coco.ckpt")
    expected = [f"head.classification_head.module_list.{i}{'.1' if lite else ''}.{p}" for i in range(6)
                for p in ("weight", "bias")]
    assert report["reinitialised"] == expected  # one 1x1 class predictor per feature map: 12 tensors
    state, source_state = task.model.state_dict(), source.model.state_dict()
    assert sorted(report["loaded"]) == sorted(set(state) - set(expected)) and len(report["loaded"]) == len(state) - 12
    assert all(torch.equal(state[k], source_state[k]) for k in report["loaded"])
    assert all(torch.equal(state[k], fresh[k]) for k in expected)  # the new classes' predictor keeps its init
    assert state[expected[0]].shape[0] == fresh[expected[0]].shape[0] != source_state[expected[0]].shape[0]
    assert f"loaded {len(state) - 12} tensors" in caplog.text


def test_fine_tuning_refuses_another_architecture(tmp_path):
    _detection_checkpoint(tmp_path / "wide.ckpt", num_classes=80, extra_depths=(64, 32, 32, 16))
    task = DetectionTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=96,
                         extra_depths=(32, 32, 32, 16), channels_last=False)
    with pytest.raises(ValueError, match=r"wide.ckpt: tensor backbone.extras.0.0.conv.weight has shape"):
        task.fine_tune_from(tmp_path / "wide.ckpt")
    torch.save({"weights": {}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        task.fine_tune_from(tmp_path / "plain.pt")


def test_no_detections_score_zero(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(GROUND_TRUTH))
    assert set(coco_evaluate(load_coco(tmp_path / "gt.json"), []).values()) == {0.0}


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        DetectionTask(num_classes=0)


def test_fit_test_predict_evaluate_through_the_cli(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "detection", "coco", "--option", "train_images=8", "--option", "val_images=4",
                 "--option", "image_size=96"]) == 0
    common = ["--model", "DetectionTask", "--model.num_classes", "4", "--model.backbone.alpha", "0.25",
              "--model.resolution", "96", "--model.extra_depths", "[32, 32, 32, 16]", "--data", "CocoDataModule",
              "--data.root", "coco", "--data.batch_size", "4", "--data.num_workers", "0",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "run",
              "--trainer.log_every_n_steps", "1"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    (checkpoint,) = Path("run").rglob("best-epoch=*.ckpt")
    keys = set().union(*(row.keys() for row in logged_metrics(Path("run"))))
    assert {"train/loss", "train/loss_box", "train/loss_cls"} | {f"val/{n}" for n in STAT_NAMES} <= keys
    main(["test", *common, "--ckpt_path", str(checkpoint)])
    (results,) = Path("run").rglob("detections_test.json")
    detections = json.loads(results.read_text())
    assert detections and {d["category_id"] for d in detections} <= {3, 7, 11, 42}  # original COCO ids
    test_row = [row for row in logged_metrics(Path("run")) if row.get("test/mAP")][-1]
    (per_category,) = Path("run").rglob("per_category_ap.csv")
    assert per_category.parent == results.parent
    with per_category.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["category_id"], r["name"]) for r in rows] == [("3", "disc"), ("7", "box"), ("11", "triangle"),
                                                              ("42", "ring")]
    capsys.readouterr()
    main(["evaluate-coco", "--gt", "coco/annotations/instances_val2017.json", "--dt", str(results)])
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["mAP"]) == pytest.approx(float(test_row["test/mAP"]), abs=1e-4)
    main(["predict", *common, "--ckpt_path", str(checkpoint), "--data.predict_dir", "coco/val2017",
          "--trainer.callbacks+=DrawDetections", "--trainer.callbacks.output_dir", "drawn",
          "--trainer.callbacks.min_score", "0"])
    (written,) = Path("run").rglob("predictions.*")  # JSON by default: a COCO result's bbox is a list
    predictions = json.loads(written.read_text())
    assert written.name == "predictions.json"
    assert predictions and {"file_name", "image_id", "category_id", "bbox", "score", "category"} <= set(predictions[0])
    assert len(list(Path("drawn").glob("*.jpg"))) == 4
    with caplog.at_level("INFO", logger="mobilenets.tasks.detection.task"):
        main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.default_root_dir", "tuned",
              "--model.fine_tune_checkpoint", str(checkpoint)])
    assert f"fine_tune_checkpoint {checkpoint}: loaded" in caplog.text


def test_training_lifts_map_through_the_evaluation_path(tmp_path):
    """Fit 8 synthetic images until they are learnt: the loss falls and COCO mAP50 rises, computed by the same
    conversion and COCOeval path as validation (labels back to COCO ids, boxes to the original pixels)."""
    torch.manual_seed(0)
    data = CocoDataModule(str(tmp_path / "coco"), synthetic=True, resolution=128, batch_size=8, num_workers=0,
                          synthetic_options=dict(train_images=8, val_images=8, image_size=128))
    data.prepare_data()
    data.setup("fit")
    task = DetectionTask(num_classes=4, backbone=BackboneConfig(alpha=0.25), resolution=128,
                         extra_depths=(64, 32, 32, 16), channels_last=False)
    task.category_ids = data.category_ids
    batch = next(iter(data.val_dataloader()))

    def map50() -> float:
        task.eval()
        with torch.no_grad():
            detections = task._to_coco(task(batch["image"]), batch["image_id"])
        return coco_evaluate(data.coco_for("val"), detections, batch["image_id"])["mAP50"]

    before = map50()
    optimizer = torch.optim.AdamW(task.parameters(), 1e-3)
    task.train()
    for step in range(120):
        losses = task.model(batch["image"], batch["target"])
        loss = losses["bbox_regression"] + losses["classification"]
        if step == 0:
            first_loss = loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first_loss
    assert before < 0.1 and map50() > 0.8


@pytest.mark.slow
def test_demo_config_reaches_a_real_map50(tmp_path, monkeypatch):
    """The demo config from scratch with 3 of its 24 epochs (to keep CI short). SSDLite at lr 0.01 reaches val
    mAP50 about 0.01, 0.10 and 0.11 over epochs 1-3 (0.25 at epoch 8), where SSD300 at lr 0.002 stays near 0.06
    after 8 epochs (docs/notes/detection-learning.md). Bar: val mAP50 passes 0.08 by epoch 3, 0.05 above epoch 1's
    (chance is about 0.005)."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs" / "demo" / "detection.yaml"), "--trainer.max_epochs", "3",
          "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false"])
    map50 = [float(row["val/mAP50"]) for row in logged_metrics(tmp_path / "runs") if row.get("val/mAP50")]
    assert len(map50) == 3, map50
    assert map50[-1] >= 0.08 and map50[-1] > map50[0] + 0.05, map50
