"""LiteRT, ExecuTorch and OpenVINO files of the tasks: each runtime agrees with PyTorch, scores the task's metric
as PyTorch does, carries the metadata, and its int8 file holds int8 weights from that runtime's own PTQ flow."""

import collections
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import LAUNCH_ENV

from mobilenets.core.errors import SettingError
from mobilenets.deploy import inference_model
from mobilenets.deploy.evaluate import TorchRunner, calibration_images, evaluate, parity
from mobilenets.deploy.runtimes import FORMATS, runtime
from mobilenets.tasks.export import export_batches

SCORED = {"classification": "top1", "geolocation": "acc_2500km", "detection": "mAP"}


@pytest.fixture(scope="module")
def written(validated, tmp_path_factory):
    """fp32 files of the classifier, the geolocator and the detector in every runtime, and the classifier's int8
    files (ExecuTorch's lowering takes 5-25 s a file on 2 cores, so int8 is written once)."""
    root = tmp_path_factory.mktemp("runtimes")
    files = {}
    for task_name in SCORED:
        task, data, _, onnx_path = validated[task_name]
        export = inference_model(task)
        calibration = calibration_images(data, export.resolution, batches=2) if task_name == "classification" else None
        for name in FORMATS:
            chosen = runtime(name)
            for suffix, batches in (("", None), *([(".int8", calibration)] if calibration else [])):
                path = root / f"{task_name}{suffix}{chosen.suffix}"
                files[task_name, name + suffix] = chosen.write(export, path, onnx_path, batches)
    return files


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("task_name", list(SCORED))
def test_runtime_agrees_with_pytorch_and_scores_the_same(validated, written, name, task_name):
    task, data, _, _ = validated[task_name]
    export = inference_model(task)
    chosen = runtime(name)
    run = chosen.runner(written[task_name, name], export, threads=2)
    images = next(export_batches(data.val_dataloader(), export.resolution))["image"]
    report = parity(export, run, images)
    if task_name == "detection":
        assert report["matched"] > 0.99
    else:
        assert all(value < 1e-4 for key, value in report.items() if key.endswith("max_abs_diff")), report
        assert all(value == 1.0 for key, value in report.items() if key.endswith("agreement")), report
    metric = SCORED[task_name]
    ours = evaluate(TorchRunner(export), export, task, data)[metric]
    assert evaluate(run, export, task, data)[metric] == pytest.approx(ours, abs=1e-4)
    assert chosen.read_metadata(written[task_name, name]) == export.metadata()
    single = run(images[:1])  # batch 1, as on a phone
    assert [a.shape[1:] for a in single] == [a.shape[1:] for a in TorchRunner(export)(images[:1])]


def test_litert_int8_is_full_integer(written):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(written["classification", "tflite.int8"]))
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    assert ops["CONV_2D"] == 14 and ops["DEPTHWISE_CONV_2D"] == 13 and ops["QUANTIZE"] == 1
    int8_weights = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8 and len(t["shape"]) == 4
                    and t["quantization_parameters"]["scales"].size > 1]
    assert len(int8_weights) == 27  # every convolution's filter, quantized per channel
    fp32 = Interpreter(model_path=str(written["classification", "tflite"]))
    assert not any(t["dtype"] == np.int8 for t in fp32.get_tensor_details())


def test_litert_int8_detector_concatenates_at_one_calibrated_scale(validated, tmp_path):
    """SSD's per-map box regressions and class logits meet in two concatenations. Each must be calibrated as one
    tensor: litert-torch's converter otherwise requantizes every map to the last map's scale (QUANTIZE ops in
    front of the concatenation), clipping the others' box deltas (the demo detector's mAP50: 39.2, not 46.1)."""
    from ai_edge_litert.interpreter import Interpreter

    task, data, _, onnx_path = validated["detection"]
    export = inference_model(task)
    path = runtime("tflite").write(export, tmp_path / "detector.int8.tflite", onnx_path,
                                   calibration_images(data, export.resolution, batches=1))
    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    producer = {output: op["op_name"] for op in ops for output in op["outputs"]}
    concatenations = [op for op in ops if op["op_name"] == "CONCATENATION"
                      and tensors[op["outputs"][0]]["dtype"] == np.int8]
    assert len(concatenations) == 2 and all(len(op["inputs"]) == 6 for op in concatenations)  # six maps each
    assert [producer[i] for op in concatenations for i in op["inputs"]] == ["RESHAPE"] * 12  # none requantized


def test_executorch_int8_is_quantized_for_xnnpack(written):
    fp32, int8 = written["classification", "executorch"], written["classification", "executorch.int8"]
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights: a quarter of the bytes, plus scales


def test_openvino_int8_quantizes_every_convolution(written):
    import openvino as ov

    model = ov.Core().read_model(str(written["classification", "openvino.int8"]))
    ops = collections.Counter(op.get_type_name() for op in model.get_ops())
    assert ops["Convolution"] + ops["GroupConvolution"] == 27 and ops["FakeQuantize"] >= 27
    assert "FakeQuantize" not in {op.get_type_name() for op in ov.Core().read_model(
        str(written["classification", "openvino"])).get_ops()}


def test_int8_stays_close_to_pytorch(validated, written):
    task, data, _, _ = validated["classification"]
    export = inference_model(task)
    images = next(export_batches(data.val_dataloader(), export.resolution))["image"]
    for name in FORMATS:
        chosen = runtime(name)
        run = chosen.runner(written["classification", name + ".int8"], export, threads=2)
        assert parity(export, run, images)["probabilities_max_abs_diff"] < 0.2, name
        assert chosen.read_metadata(written["classification", name + ".int8"]) == export.metadata()


#: Two OpenVINO runners made and dropped in that order (as ``mobilenets export`` does), then a signal whose Python
#: handler runs on the thread's alternate signal stack, as a data loader worker's SIGCHLD does in a later fit.
SIGNAL_AFTER_OPENVINO = """
import gc, os, signal, sys
import torch
from mobilenets.backbone import BackboneConfig
from mobilenets.deploy import export_onnx, inference_model
from mobilenets.deploy.runtimes import runtime
from mobilenets.tasks.classification import ClassificationTask

task = ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=32).eval()
export_onnx(task, sys.argv[1])
chosen, export = runtime("openvino"), inference_model(task)
path = chosen.write(export, sys.argv[1].replace(".onnx", ".xml"), sys.argv[1])
first = chosen.runner(path, export, threads=1)
second = chosen.runner(path, export, threads=1)
first(torch.rand(1, 3, 32, 32)), second(torch.rand(1, 3, 32, 32))
del first
gc.collect()
del second
gc.collect()
caught = []
signal.signal(signal.SIGCHLD, lambda *args: caught.append(args[0]))
os.kill(os.getpid(), signal.SIGCHLD)
print("handled", len(caught))
"""


def test_a_signal_after_openvino_runners_is_handled(tmp_path):
    """OpenVINO's CPU plugin leaves a freed alternate signal stack installed when its runtimes are dropped out of
    order; without ``kept_signal_stack`` this process dies of SIGSEGV (rc -11)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_OPENVINO, str(tmp_path / "model.onnx")],
                            capture_output=True, text=True, timeout=300, env=LAUNCH_ENV)
    assert result.returncode == 0 and result.stdout.strip() == "handled 1", (result.returncode, result.stderr[-2000:])


def test_missing_runtime_names_its_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name))
    with pytest.raises(SettingError, match=r"^--format tflite needs litert_torch: pip install "
                                           r"'mobilenet-suite\[tflite\]'$"):
        runtime("tflite")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name))
    with pytest.raises(SettingError, match=r"^--format openvino needs nncf: pip install 'mobilenet-suite'$"):
        runtime("openvino")  # a dependency of the package itself
    with pytest.raises(SettingError, match="unknown export format 'coreml'"):
        runtime("coreml")


def test_litert_single_level_geolocation_and_float_outputs_of_int8(validated, tmp_path):
    """A partition of one level (no coarser cells) lowers to LiteRT, and a full-integer file's outputs are the
    float probabilities (read through the output's scale), not int8 codes."""
    from mobilenets.backbone import BackboneConfig
    from mobilenets.tasks.geolocation import GeolocationTask

    chosen = runtime("tflite")
    geo = inference_model(GeolocationTask(num_cells=6, backbone=BackboneConfig(alpha=0.25), resolution=48).eval())
    path = chosen.write(geo, tmp_path / "geo.tflite", tmp_path / "unused.onnx")
    images = torch.rand(2, 3, 48, 48)
    assert parity(geo, chosen.runner(path, geo, threads=2), images)["probabilities_max_abs_diff"] < 1e-4
    task, data, _, _ = validated["attributes"]
    export = inference_model(task)
    calibration = calibration_images(data, export.resolution, batches=1)
    int8 = chosen.write(export, tmp_path / "attributes.int8.tflite", tmp_path / "unused.onnx", calibration)
    (probabilities,) = chosen.runner(int8, export, threads=2)(images)
    assert probabilities.dtype == np.float32 and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert np.abs(probabilities - TorchRunner(export)(images)[0]).max() < 0.15
