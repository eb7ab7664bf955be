"""ONNX export of the five tasks: onnxruntime equals PyTorch, the metric of an export equals the task's own
Lightning metric, int8 quantization, metadata, and the ``mobilenets export`` command end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import pytorch_lightning as pl
import torch

from mobilenets.cli import main
from mobilenets.deploy import export_onnx, inference_model, read_metadata
from mobilenets.deploy.evaluate import (
    OnnxRunner,
    TorchRunner,
    calibration_images,
    evaluate,
    parity,
    quantize_int8,
)
from mobilenets.tasks.classification import ClassificationTask, DogsDataModule
from mobilenets.tasks.distillation import SemiSupervisedDataModule
from mobilenets.tasks.export import export_batches

TASK_METRIC = {"classification": "top1", "attributes": "mAP", "embedding": "accuracy", "geolocation": "acc_2500km"}


@pytest.mark.parametrize("name", list(TASK_METRIC))
def test_export_scores_like_the_task_and_onnxruntime_agrees(validated, name):
    task, data, lightning, path = validated[name]
    export = inference_model(task)
    ours = evaluate(TorchRunner(export), export, task, data)
    exported = evaluate(OnnxRunner(path), export, task, data)
    metric = TASK_METRIC[name]
    assert ours[metric] == pytest.approx(lightning[f"val/{metric}"], abs=1e-6)  # the same metric as the task's
    assert exported == pytest.approx(ours, abs=1e-6)
    images = next(export_batches(data.val_dataloader(), export.resolution))["image"]
    report = parity(export, OnnxRunner(path), images)
    assert all(value < 1e-4 for key, value in report.items() if key.endswith("max_abs_diff"))
    assert all(value == 1.0 for key, value in report.items() if key.endswith("agreement"))


def test_exported_outputs_and_metadata(validated):
    task, data, _, path = validated["geolocation"]
    meta = read_metadata(path)
    assert meta["task"].endswith("GeolocationTask") and meta["resolution"] == 48
    assert meta["s2_cell_ids"] == task.cell_ids.tolist()
    probabilities, top, cells, coordinates = OnnxRunner(path)(torch.rand(3, 3, 48, 48))  # any batch size
    assert probabilities.shape == (3, task.hparams.num_cells) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    expected = torch.stack([task.cell_lat, task.cell_lon], 1).float()[torch.from_numpy(cells[:, 0])]
    assert np.allclose(coordinates, expected.numpy())
    _, _, _, path = validated["embedding"]
    (embeddings,) = OnnxRunner(path)(torch.rand(2, 3, 48, 48))
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    task, data, _, path = validated["classification"]
    assert read_metadata(path)["class_names"] == task.class_names == data.class_names


def test_detection_export_nms_in_the_graph(validated):
    task, data, lightning, path = validated["detection"]
    export = inference_model(task)
    images = next(export_batches(data.val_dataloader(), 96))["image"]
    assert parity(export, OnnxRunner(path), images)["matched"] > 0.99
    # Our NMS keeps what torchvision's SSD keeps at the top of each image's list.
    ours = TorchRunner(export)(images)
    with torch.no_grad():
        theirs = task.model(list(images))
    for image, found in enumerate(theirs):
        mine = ours[0] == image
        order = np.argsort(-ours[2][mine], kind="stable")[:10]
        assert np.allclose(ours[2][mine][order], found["scores"][:10].numpy(), atol=1e-5)
        assert np.allclose(ours[1][mine][order], found["boxes"][:10].numpy(), atol=1e-3)
        assert (ours[3][mine][order] == found["labels"][:10].numpy()).all()
    assert {node.op_type for node in onnx.load(str(path)).graph.node} >= {"NonMaxSuppression", "GatherND"}
    metrics = evaluate(OnnxRunner(path), export, task, data)
    assert metrics["mAP"] == pytest.approx(evaluate(TorchRunner(export), export, task, data)["mAP"], abs=1e-4)
    assert read_metadata(path)["category_ids"] == data.category_ids
    with pytest.raises(ValueError, match="exported at its own resolution"):
        export_onnx(task, path.with_name("dynamic.onnx"), dynamic_size=True)


def test_dynamic_size_export(validated, tmp_path):
    task = validated["classification"][0]
    path = export_onnx(task, tmp_path / "any_size.onnx", dynamic_size=True)
    images = torch.rand(2, 3, 80, 64)
    expected = inference_model(task)(images)[0].numpy()
    assert np.abs(OnnxRunner(path)(images)[0] - expected).max() < 1e-5


def test_a_student_taught_without_labels_calibrates_on_its_unlabeled_images(validated):
    """With ``label_fraction: 0`` every training image is unlabeled: calibration draws from those (it used to find
    no images and stop with onnxruntime's "No data is collected")."""
    _, data, _, _ = validated["classification"]
    semi_supervised = SemiSupervisedDataModule(data.spec(), label_fraction=0.0)  # a data module of its own
    batches = calibration_images(semi_supervised, 48, batches=2)
    assert len(semi_supervised.datasets["train"]) == 0 and len(semi_supervised.datasets["unlabeled"]) == 11
    assert [b.shape for b in batches] == [(8, 3, 48, 48), (3, 3, 48, 48)]


def test_int8_quantization_calibrates_on_training_images(validated, tmp_path):
    task, data, _, path = validated["classification"]
    batches = calibration_images(data, 48, batches=2)
    assert len(data.datasets["train"]) == 11  # 12 written, 1 split off for validation
    assert [b.shape for b in batches] == [(8, 3, 48, 48), (3, 3, 48, 48)]
    int8 = quantize_int8(path, tmp_path / "model.int8.onnx", batches)
    model = onnx.load(str(int8))
    initializers = {i.name: i for i in model.graph.initializer}
    dequantized_from = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv_weights = [initializers[dequantized_from[n.input[1]]] for n in model.graph.node if n.op_type == "Conv"]
    assert len(conv_weights) == 27 and all(w.data_type == onnx.TensorProto.INT8 for w in conv_weights)
    assert read_metadata(int8) == read_metadata(path)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.prepared.onnx"))
    probabilities = OnnxRunner(int8)(batches[0])[0]
    assert probabilities.shape == (8, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-4)


def test_export_refuses_what_it_cannot_export(tmp_path):
    from tiny_task import TinyTask

    with pytest.raises(NotImplementedError, match="TinyTask defines no export_module, so it cannot be exported"):
        inference_model(TinyTask())
    with pytest.raises(SystemExit, match="^mobilenets: .*missing.ckpt"):
        main(["export", str(tmp_path / "missing.ckpt")])
    (tmp_path / "plain.onnx").write_bytes(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
                                          .SerializeToString())
    with pytest.raises(ValueError, match="plain.onnx: not exported by mobilenets"):
        read_metadata(tmp_path / "plain.onnx")


def test_export_command_end_to_end(tmp_path, monkeypatch):
    """Fit through the CLI, then ``mobilenets export`` from the checkpoint alone: files, parity, and the same
    top-1 as ``mobilenets validate`` reports for the checkpoint."""
    monkeypatch.chdir(tmp_path)
    main(["synth", "classification", "dogs", "--option", "num_classes=3", "--option", "train_per_class=4",
          "--option", "test_per_class=3"])
    common = ["--model", "ClassificationTask", "--model.num_classes", "3", "--model.backbone.alpha", "0.25",
              "--model.resolution", "48", "--data", "DogsDataModule", "--data.root", "dogs", "--data.batch_size", "4",
              "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "run"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    (checkpoint,) = Path("run").rglob("best-epoch=*.ckpt")
    # the default formats, onnx and openvino; the others: tests/deploy/test_runtimes.py
    assert main(["export", str(checkpoint), "--output", "out", "--pt2", "--calibration-batches", "2"]) == 0
    assert sorted(p.name for p in Path("out").iterdir()) == [
        "export_report.json", "model.bin", "model.int8.bin", "model.int8.onnx", "model.int8.xml", "model.onnx",
        "model.pt2", "model.xml"]
    report = json.loads(Path("out/export_report.json").read_text())
    runtimes = {"onnx", "openvino"}
    assert set(report["metrics"]) == set(report["latency_ms"]) == {
        "pytorch", *runtimes, *(name + "_int8" for name in runtimes)}
    assert set(report["parity"]) == set(report["metrics"]) - {"pytorch"}
    for name in runtimes:
        assert report["parity"][name]["probabilities_max_abs_diff"] < 1e-4
        assert report["metrics"][name]["top1"] == report["metrics"]["pytorch"]["top1"]
    task = ClassificationTask.load_from_checkpoint(checkpoint, map_location="cpu")
    (validated,) = pl.Trainer(logger=False, enable_progress_bar=False).validate(
        task, DogsDataModule("dogs", resolution=48, batch_size=4, num_workers=0), verbose=False)
    assert report["metrics"]["pytorch"]["top1"] == report["metrics"]["onnx"]["top1"] == pytest.approx(
        validated["val/top1"], abs=1e-6)
    shutil.rmtree("dogs")  # the checkpoint alone exports (random calibration images, nothing to score)
    assert main(["export", str(checkpoint), "--output", "bare", "--no-data", "--calibration-batches", "1"]) == 0
    bare = json.loads(Path("bare/export_report.json").read_text())
    assert "metrics" not in bare and set(bare["files"]) == {"onnx", "onnx_int8", "openvino", "openvino_int8"}
    assert read_metadata("bare/model.onnx")["class_names"] == task.class_names
    program = torch.export.load("out/model.pt2")
    images = torch.rand(3, 3, 48, 48)
    assert torch.allclose(program.module()(images)[0], inference_model(task)(images)[0], atol=1e-5)
