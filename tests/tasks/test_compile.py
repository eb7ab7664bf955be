"""``compile``: a task's backbone ``torch.compile``d in place. Checkpoints keep their keys, so a compiled run's
checkpoint loads uncompiled and the other way round, resumes, and the outputs are the eager ones. The tests compile with
the ``aot_eager`` backend (the whole trace, without inductor's minutes of code generation on a CPU)."""

import pytest
import torch
from helpers import DOGS, QUICK

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.tasks.distillation.teachers import TeacherConfig, load_teacher
from mobilenets.tasks.classification import ClassificationTask
from mobilenets.tasks.detection import DetectionTask
from mobilenets.tasks.data.loading import load_task
from mobilenets.tasks.data.resume import find_last_checkpoint

TRACED = {"backend": "aot_eager"}


def test_a_compiled_fit_writes_plain_keys_and_the_checkpoint_loads_either_way(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    main(["fit", *DOGS, *QUICK, "--model.init_args.compile", '{"backend": "aot_eager"}', "--trainer.max_steps", "2",
          "--trainer.default_root_dir", "run", "--trainer.callbacks", "pytorch_lightning.callbacks.ModelCheckpoint",
          "--trainer.callbacks.dirpath", "run", "--trainer.callbacks.filename", "model"])
    assert "the backbone is compiled (torch.compile {'backend': 'aot_eager'})" in caplog.text
    compiled = load_task("run/model.ckpt")  # built with the recorded compile setting
    plain = ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=48).eval()
    state = torch.load("run/model.ckpt", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in key for key in state) and set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    images = plain.backbone.normalize(torch.rand(2, 3, 48, 48))
    with torch.no_grad():
        assert torch.allclose(compiled(images), plain(images), atol=1e-5)
    again = ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=48, compile=TRACED)
    again.load_state_dict(plain.state_dict())  # an eager run's weights into a compiled task
    with torch.no_grad():
        assert torch.allclose(again.eval()(images), plain(images), atol=1e-5)
    main(["fit", *DOGS, *QUICK, "--model.init_args.compile", '{"backend": "aot_eager"}', "--trainer.max_steps", "3",
          "--trainer.default_root_dir", "run", "--ckpt_path", "last"])  # a compiled run resumes
    assert torch.load(find_last_checkpoint("run"), weights_only=False)["global_step"] == 3


def test_detection_compiles_its_backbone_and_a_teacher_compiles_too(checkpoints):
    task = DetectionTask(num_classes=2, backbone=BackboneConfig(alpha=0.25), resolution=96,
                         extra_depths=(32, 16, 16, 8), compile=TRACED).eval()
    with torch.no_grad():
        detections = task.model([torch.rand(3, 96, 96)])
    assert set(detections[0]) == {"boxes", "scores", "labels"}
    teacher = load_teacher(TeacherConfig(checkpoint=str(checkpoints / "dogs" / "model.ckpt"), compile=TRACED))
    plain = load_teacher(TeacherConfig(checkpoint=str(checkpoints / "dogs" / "model.ckpt")))
    images = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(teacher(images), plain(images), atol=1e-5)


def test_quantization_aware_training_refuses_a_compiled_body():
    from mobilenets.deploy.qat import QuantizationAwareTraining

    task = ClassificationTask(num_classes=3, backbone=BackboneConfig(alpha=0.25), resolution=32, compile=TRACED)
    trainer = type("OneProcess", (), {"world_size": 1})()
    with pytest.raises(SettingError, match="set model.init_args.compile: false for the QAT fit"):
        QuantizationAwareTraining().on_fit_start(trainer, task)


def test_bench_gpu_without_a_gpu_says_so_and_succeeds(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu"]) == 0
    assert capsys.readouterr().out == ("mobilenets bench gpu: no CUDA GPU here (torch.cuda.is_available() is False); "
                                       "nothing measured\n")


def test_the_gpu_check_runs_its_plumbing_small_on_a_cpu():
    """The same code ``mobilenets bench gpu`` runs, on the CPU at toy sizes (the compiled rows traced by dynamo
    and run eagerly)."""
    from mobilenets.tasks.detection.bench_gpu import bench_gpu

    classification, detection, pipeline = bench_gpu(batch_size=2, steps=1, warmup=0, detection_batch=2, images=4,
                                                    device="cpu", compile_options={"backend": "eager"}, workers=0,
                                                    resolution=32, detection_size=64)
    assert [row[:2] for row in classification.rows] == [["ours", "eager"], ["ours", "compiled"],
                                                       ["timm mobilenetv1_100", "eager"],
                                                       ["timm mobilenetv1_100", "compiled"]]
    assert all(float(row[2]) > 0 for row in classification.rows) and len(detection.rows) == 3
    assert len(pipeline.rows) == 3 and all(float(row[1]) > 0 for row in pipeline.rows)
