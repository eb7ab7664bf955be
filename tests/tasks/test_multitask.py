"""MultiTask: one body under several heads. The shared graph equals each head's own network, runs the body once,
trains through the CLI with every head's metrics under its name, reloads, and exports to one ONNX graph whose
every head scores as PyTorch does."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from helpers import LAUNCH_ENV, logged_metrics

from mobilenets.backbone import BackboneConfig
from mobilenets.backbone.profile import profile_model
from mobilenets.cli import main
from mobilenets.core.errors import SettingError
from mobilenets.deploy import inference_model
from mobilenets.deploy.checkpoint import export_checkpoint
from mobilenets.distill import DistillationTask
from mobilenets.tasks.data.loading import load_task
from mobilenets.tasks.detection import Detection
from mobilenets.tasks.distillation import SemiSupervisedDataModule, Teacher, TeacherConfig
from mobilenets.tasks.face_attributes import CelebADataModule, FaceAttributes
from mobilenets.tasks.face_embedding import FaceEmbedding, FaceEmbeddingTask, FaceIdentityDataModule
from mobilenets.tasks.multitask import MultiTask, MultiTaskDataModule, UncertaintyWeighting, write_multitask
from mobilenets.tasks.optim import parameter_groups

HEADS = {
    "face_attributes": {"class_path": "FaceAttributes", "init_args": {"num_attributes": 10}},
    "face_embedding": {"class_path": "FaceEmbedding", "init_args": {"embedding_dim": 16}},
}
ARGS = ["--model", "MultiTask", "--model.heads", json.dumps({**HEADS, "face_attributes": {
            "class_path": "FaceAttributes"}}),  # its size from the data
        "--model.backbone.alpha", "0.25", "--model.resolution", "48", "--model.lr", "0.05",
        "--model.loss_weights", "uncertainty",
        "--data", "MultiTaskDataModule", "--data.datamodules", json.dumps({
            "face_attributes": {"class_path": "CelebADataModule", "init_args": {
                "root": "data/celeba", "synthetic": True, "synthetic_options": {"num_images": 60},
                "batch_size": 8, "num_workers": 0}},
            "face_embedding": {"class_path": "FaceIdentityDataModule", "init_args": {
                "root": "data/faces", "synthetic": True, "batch_size": 8, "num_workers": 0,
                "synthetic_options": {"train_identities": 6, "train_images": 4, "test_identities": 6,
                                      "test_images": 3, "folds": 2, "pairs_per_fold": 6}}}}),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", "--seed_everything", "0"]


def _heads(**settings):
    """The two heads' parts, as Python builds them (configs give HEADS)."""
    return {"face_attributes": FaceAttributes(num_attributes=10, **settings),
            "face_embedding": FaceEmbedding(embedding_dim=16, **settings)}


def _model(**kwargs):
    return MultiTask(heads=_heads(), resolution=48, **kwargs)


def test_heads_share_one_body_and_the_graph_runs_it_once():
    task = _model().eval()
    assert all(head.backbone is task.backbone for head in task.heads.values())
    images = torch.rand(3, 3, 48, 48)
    network = task.inference_network()
    calls = []
    for layer in network.networks["face_attributes"].backbone.features.children():
        layer.layer.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        attributes, embeddings = network(task.backbone.normalize(images))
        own = [head.inference_network()(task.backbone.normalize(images)) for head in task.heads.values()]
    assert len(calls) == len(list(task.backbone.features.children()))  # each body layer once for both heads
    assert torch.equal(attributes, own[0]) and torch.equal(embeddings, own[1])
    # the live model is untouched: its layers are not the graph's wrapped copies
    assert not any(hasattr(layer, "layer") for layer in task.backbone.features.children())


def test_uncertainty_weighting_is_kendalls_and_learns_the_weights():
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_variance["a"].fill_(0.5)
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    expected = torch.exp(torch.tensor(-0.5)) * 2.0 + 0.5 + 3.0
    assert weighting(losses).item() == pytest.approx(expected.item())
    weighting(losses).backward()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L: a large loss lowers its weight's log-variance gradient below zero
    assert weighting.log_variance["b"].grad.item() == pytest.approx(1 - 3.0)
    assert weighting.weights()["a"] == pytest.approx(float(torch.exp(torch.tensor(-0.5))))
    task = _model(loss_weights="uncertainty")  # learned with the heads, never shrunk by weight decay
    groups = {group["name"]: group["params"] for group in parameter_groups(task, task.backbone, 0.1, 4e-5)}
    assert any(param is task.uncertainty.log_variance["face_attributes"] for param in groups["head/no_decay"])


def test_fixed_loss_weights_scale_each_heads_loss():
    task = _model(loss_weights={"face_attributes": 2.0, "face_embedding": 0.0}).eval()  # no dropout, fixed BN
    batch = {"face_attributes": {"image": torch.rand(4, 3, 48, 48), "label": torch.randint(0, 2, (4, 10))},
             "face_embedding": {"image": torch.rand(4, 3, 48, 48), "label": torch.tensor([0, 0, 1, 1])}}
    loss, outputs, logs = task.supervised_loss(batch)
    own = task.heads["face_attributes"].supervised_loss(batch["face_attributes"]).loss
    assert loss.item() == pytest.approx(2.0 * own.item(), rel=1e-5)
    assert set(outputs) == set(HEADS)
    # each head's loss and the parts it reports, under its name
    assert {"train/face_attributes/loss", "train/face_embedding/loss", "train/face_embedding/active_triplets"} <= set(logs)


def test_jacobian_descent_gives_the_body_the_aggregate_of_the_heads_gradients():
    """``gradient_aggregation: UPGrad``: the body's gradient is torchjd's UPGrad of the matrix whose rows are each
    head's weighted-loss gradient (computed here one head at a time); every other parameter keeps its own loss's
    gradient, the learned loss weights included."""
    from torchjd.aggregation import UPGrad

    torch.manual_seed(0)
    task = _model(loss_weights="uncertainty", gradient_aggregation="UPGrad")
    batch = {"face_attributes": {"image": torch.rand(4, 3, 48, 48), "label": torch.randint(0, 2, (4, 10))},
             "face_embedding": {"image": torch.rand(4, 3, 48, 48), "label": torch.tensor([0, 0, 1, 1])}}
    body = [p for p in task.backbone.parameters() if p.requires_grad]
    loss = task.supervised_loss(batch).loss
    rows = [torch.cat([g.flatten() for g in torch.autograd.grad(term, body, retain_graph=True)])
            for term in task._terms.values()]
    own = {name: torch.autograd.grad(loss, [p], retain_graph=True)[0] for name, p in task.named_parameters()
           if "uncertainty" in name or name.startswith("heads.face_embedding.model.head")}
    task.backward(loss)
    expected = UPGrad()(torch.stack(rows))
    assert torch.allclose(torch.cat([p.grad.flatten() for p in body]), expected, atol=1e-6)
    assert not torch.allclose(expected, rows[0] + rows[1], atol=1e-4)  # not the plain sum: the heads conflict
    for name, param in task.named_parameters():
        if name in own:
            assert torch.allclose(param.grad, own[name]), name
    with pytest.raises(SettingError, match="gradient_aggregation must be 'sum' or a torchjd aggregator"):
        _model(gradient_aggregation="Krum")


def test_a_model_built_in_python_reloads_from_its_checkpoint(tmp_path):
    """The heads are recorded as the specs that rebuild them, which Lightning hands back to the constructor."""
    import pytorch_lightning as pl

    task = _model(backbone=BackboneConfig(alpha=0.25)).eval()
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": pl.__version__}, tmp_path / "model.ckpt")
    loaded = MultiTask.load_from_checkpoint(tmp_path / "model.ckpt", weights_only=False).eval()
    assert {name: type(head) for name, head in loaded.heads.items()} == {"face_attributes": FaceAttributes,
                                                                         "face_embedding": FaceEmbedding}
    assert all(head.backbone is loaded.backbone for head in loaded.heads.values())
    images = torch.rand(2, 3, 48, 48)
    for network, reloaded in zip(task.inference_network()(images), loaded.inference_network()(images)):
        torch.testing.assert_close(network, reloaded)


@pytest.mark.parametrize("settings, message", [
    (lambda: {"heads": {}}, "at least one head"),
    (lambda: {"heads": {"a/b": _heads()["face_embedding"]}}, "without '/'"),
    (lambda: {"heads": {"emb": FaceEmbedding(resolution=96)}}, "sets resolution: every head shares the model's"),
    (lambda: {"heads": {"emb": FaceEmbeddingTask()}}, r"head 'emb' is a FaceEmbeddingTask: give class_path: "
                                                      r"FaceEmbedding"),
    (lambda: {"heads": _heads(), "loss_weights": {"faces": 1.0}}, "no head 'faces'"),
    (lambda: {"heads": _heads(), "loss_weights": "equal"}, "or 'uncertainty'"),
    (lambda: {"heads": {"det": Detection(num_classes=3, resolution=96)}}, "own sizes"),
    (lambda: {"heads": _heads(), "teachers": {"face_attributes": {"checkpiont": "a.ckpt"}}},
     r"^MultiTask teachers.face_attributes: a teacher takes no 'checkpiont'; did you mean checkpoint\?$"),
    (lambda: {"heads": _heads(), "teachers": {"face_attributes": {"checkpoint": "a.ckpt", "arch": "timm:x"}}},
     "teachers.face_attributes: a teacher needs exactly one of checkpoint, arch, class_path"),
])
def test_bad_settings_say_what_to_change(settings, message):
    with pytest.raises(SettingError, match=message):
        MultiTask(resolution=96, **settings())


def test_bad_data_settings_say_what_to_change():
    with pytest.raises(SettingError, match="sets resolution"):
        MultiTaskDataModule({"a": CelebADataModule("x", resolution=64)})
    with pytest.raises(SettingError, match="mode must be one of"):
        MultiTaskDataModule({"a": CelebADataModule("x")}, mode="cycle")
    with pytest.raises(SettingError, match="'a': give a task's data module"):
        MultiTaskDataModule({"a": "data/celeba"})
    with pytest.raises(SettingError, match="sets resolution"):
        MultiTaskDataModule({"a": SemiSupervisedDataModule(CelebADataModule("x"), resolution=64)})
    with pytest.raises(SettingError, match="SemiSupervisedDataModule wraps a task's data module"):
        SemiSupervisedDataModule(MultiTaskDataModule({"a": CelebADataModule("x")}))
    with pytest.raises(SettingError, match="sets resolution 64, but the input size is 96"):
        SemiSupervisedDataModule(CelebADataModule("x", resolution=64), resolution=96)


@pytest.mark.slow
def test_fit_test_reload_and_export_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *ARGS, "--trainer.max_epochs", "2", "--trainer.default_root_dir", "runs"])
    rows = logged_metrics(Path("runs"))
    logged = {key for row in rows for key in row}
    assert {"val/face_attributes/mAP", "val/face_embedding/accuracy", "train/face_attributes/loss",
            "train/face_embedding/loss", "train/face_attributes/weight", "train/loss"} <= logged
    (checkpoint,) = Path("runs").rglob("best-*.ckpt")  # chosen by the first head's val/face_attributes/mAP
    main(["test", *ARGS, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", "tested"])
    (tested,) = [row for row in logged_metrics(Path("tested")) if "test/face_attributes/mAP" in row]
    assert 0 <= float(tested["test/face_attributes/mAP"]) <= 1 and 0 <= float(tested["test/face_embedding/auc"]) <= 1

    task = load_task(checkpoint)  # the attribute head's size, read from the data, was recorded
    assert task.heads["face_attributes"].hparams.num_attributes == 10
    assert task.heads["face_attributes"].attribute_names[0] != "attribute_0"  # names restored from the checkpoint
    assert all(head.backbone is task.backbone for head in task.heads.values())

    report = export_checkpoint(checkpoint, task, "exported", int8=True, calibration=2, evaluate_data=True)
    model = onnx.load("exported/model.onnx")
    assert [output.name for output in model.graph.output] == ["face_attributes.probabilities",
                                                              "face_embedding.embeddings"]
    depthwise = [node for node in model.graph.node if node.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    assert len(depthwise) == 13  # the body's 13 depthwise layers, once for both heads
    assert all(value < 1e-4 for key, value in report["parity"]["onnx"].items() if key.endswith("max_abs_diff"))
    ours = report["metrics"]["pytorch"]
    assert set(ours) == {"face_attributes/mAP", "face_embedding/accuracy", "face_embedding/auc"}
    assert report["metrics"]["onnx"] == pytest.approx(ours, abs=1e-5)
    assert report["metrics"]["openvino"] == pytest.approx(ours, abs=1e-5)  # the default formats: onnx, openvino
    for int8 in ("onnx_int8", "openvino_int8"):
        assert set(report["metrics"][int8]) == set(ours)  # calibrated on both heads' training images
    metadata = json.loads(model.metadata_props[0].value)
    assert set(metadata["heads"]) == set(HEADS) and "verification_threshold" in metadata["heads"]["face_embedding"]
    export = inference_model(task)
    assert export.slices == {"face_attributes": slice(0, 1), "face_embedding": slice(1, 2)}


@pytest.mark.slow
def test_two_processes_evaluate_both_heads_exactly_like_one(tmp_path, monkeypatch):
    """Validate one checkpoint in one process and with 2 DDP processes: every head's metrics agree."""
    monkeypatch.chdir(tmp_path)
    main(["fit", *ARGS, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", "fit"])
    (checkpoint,) = Path("fit").rglob("epoch=*.ckpt")
    main(["validate", *ARGS, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", "one"])
    two = [*ARGS, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", "two", "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    result = subprocess.run([sys.executable, "-m", "mobilenets.cli", "validate", *two], capture_output=True,
                            text=True, timeout=300, env=LAUNCH_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    (single,) = [row for row in logged_metrics(Path("one")) if "val/face_attributes/mAP" in row]
    (double,) = [row for row in logged_metrics(Path("two")) if "val/face_attributes/mAP" in row]
    metrics = {key for key, value in single.items() if key.startswith("val/") and "loss" not in key and value}
    assert {"val/face_attributes/mAP", "val/face_embedding/accuracy", "val/face_embedding/auc"} <= metrics
    assert {k: float(single[k]) for k in metrics} == pytest.approx({k: float(double[k]) for k in metrics}, abs=1e-6)


def test_profile_counts_the_body_once_against_the_separate_models(capsys):
    task = _model()
    alone_attributes, alone_embedding, together, joint = task.profile_rows()
    body = profile_model(task.backbone, 48)
    assert together[1:] == (alone_attributes[1] + alone_embedding[1], alone_attributes[2] + alone_embedding[2])
    assert together[1] - joint[1] == body.macs and together[2] - joint[2] == body.params  # the body, counted once
    main(["profile", "--config", "demo/multitask.yaml"])
    text = capsys.readouterr().out
    assert "| MultiTask, one body | 13.35 | 0.249 |" in text and "| separate models, together | 26.66 |" in text
    main(["profile", "--config", "paper/multitask_faces.yaml"])  # the paper-scale example: 1.0 MobileNet-160
    text = capsys.readouterr().out
    assert "| MultiTask, one body | 289.82 | 3.379 |" in text and "| separate models, together | 579.47 |" in text


@pytest.mark.slow
def test_each_head_distils_from_its_own_teacher(tmp_path, monkeypatch):
    """A teacher per head, each a checkpoint of that task at another size (64 px; a 32-d embedding for the 16-d
    head, so through a learned projection): both heads log their distillation loss, the checkpoint holds no
    teacher and reloads without the teachers' files; a teacher of another task is refused."""
    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0",
             "--model.backbone.alpha", "0.25", "--model.resolution", "64", "--data.num_workers", "0",
             "--data.batch_size", "8", "--data.synthetic", "true"]
    main(["fit", "--model", "FaceAttributesTask", "--data", "CelebADataModule", "--data.root", "data/celeba",
          "--data.synthetic_options", "{num_images: 60}", "--trainer.default_root_dir", "attr", *quiet])
    main(["fit", "--model", "FaceEmbeddingTask", "--model.embedding_dim", "32", "--data", "FaceIdentityDataModule",
          "--data.root", "data/faces", "--data.synthetic_options", "{train_identities: 6, train_images: 4, "
          "test_identities: 6, test_images: 3, folds: 2, pairs_per_fold: 6}", "--trainer.default_root_dir", "emb",
          *quiet])
    teachers = {"face_attributes": str(next(Path("attr").rglob("*.ckpt"))),
                "face_embedding": str(next(Path("emb").rglob("*.ckpt")))}
    main(["fit", *ARGS, "--model.teachers", json.dumps(teachers), "--trainer.max_epochs", "1",
          "--trainer.default_root_dir", "runs"])
    logged = {key for row in logged_metrics(Path("runs")) for key in row}
    assert {"train/face_attributes/distill_loss", "train/face_embedding/distill_loss"} <= logged
    (checkpoint,) = Path("runs").rglob("best-*.ckpt")
    assert not any("teacher" in key for key in torch.load(checkpoint, weights_only=False)["state_dict"])
    shutil.rmtree("attr")
    assert load_task(checkpoint).heads["face_embedding"].hparams.embedding_dim == 16  # no teacher needed to reload
    criteria = torch.load(checkpoint, weights_only=False)["distillation_criteria"]  # what a resumed fit restores
    assert criteria["face_attributes"] == {} and criteria["face_embedding"]["projection.weight"].shape == (32, 16)
    swapped = {"face_attributes": teachers["face_embedding"]}
    with pytest.raises(SystemExit, match="the teacher of the 'face_attributes' head: .* cannot teach a "
                                         "FaceAttributesTask student"):
        main(["fit", *ARGS, "--model.teachers", json.dumps(swapped), "--trainer.default_root_dir", "swapped"])


def _semi_supervised(args: list[str], head: str, **init_args) -> list[str]:
    """``args`` with head ``head``'s data module in a ``SemiSupervisedDataModule`` of ``init_args``."""
    at = args.index("--data.datamodules") + 1
    datamodules = json.loads(args[at])
    datamodules[head] = {"class_path": "SemiSupervisedDataModule",
                         "init_args": {"datamodule": datamodules[head], **init_args}}
    return [*args[:at], json.dumps(datamodules), *args[at + 1:]]


def test_a_taught_head_learns_from_its_unlabeled_images_as_the_distiller_does(tmp_path, monkeypatch):
    """A taught head whose semi-supervised data keeps half its images unlabeled (``label_fraction``): on one batch of
    labeled and unlabeled images, the same student and the same teacher, MultiTask's loss is the distiller's
    (``DistillationTask``), and it is not the loss of the labeled part alone. Through the CLI every training step
    hands the teacher both parts; a head with neither labels nor a teacher is refused."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--model", "FaceAttributesTask", "--data", "CelebADataModule", "--data.root", "data/celeba",
          "--data.synthetic", "true", "--data.synthetic_options", "{num_images: 60}", "--data.num_workers", "0",
          "--data.batch_size", "8", "--model.backbone.alpha", "0.25", "--model.resolution", "64",
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "teacher"])
    teacher = str(next(Path("teacher").rglob("*.ckpt")))

    data = SemiSupervisedDataModule(CelebADataModule(root="data/celeba", resolution=48, batch_size=4, num_workers=0),
                                    label_fraction=0.5)
    data.setup("fit")
    data.enable_distillation()
    batch = next(iter(data.train_dataloader()))[0]
    assert set(batch) == {"labeled", "unlabeled"} and (batch["unlabeled"]["label"] == -1).all()
    model = MultiTask(heads={"face_attributes": _heads()["face_attributes"]}, resolution=48, hard_weight=0.3,
                      backbone=BackboneConfig(alpha=0.25), teachers={"face_attributes": teacher})
    model._load_teachers()
    torch.nn.init.normal_(model.heads["face_attributes"].model.head.weight, std=1.0)  # logits away from 0
    for dropout in (module for module in model.modules() if isinstance(module, torch.nn.Dropout)):
        dropout.p = 0.0  # training mode (BN on each part's own statistics, as in a fit) without random drops
    distiller = DistillationTask(copy.deepcopy(model.heads["face_attributes"]), TeacherConfig(checkpoint=teacher),
                                 resolution=48, hard_weight=0.3)
    prepared = model._prepared("face_attributes", copy.deepcopy(batch))
    seen = {"multitask": [], "distiller": []}  # what each teacher network is given: exactly the same images

    def record(name):
        return lambda module, args: seen[name].append(args[0].clone()) and None

    hooks = [model._teachers["face_attributes"].model.model.register_forward_pre_hook(record("multitask")),
             distiller.teacher.model.model.register_forward_pre_hook(record("distiller"))]
    with torch.no_grad():
        loss = model.supervised_loss({"face_attributes": prepared}).loss
        labeled_only = model.supervised_loss({"face_attributes": {"labeled": prepared["labeled"]}}).loss
        expected = distiller.training_step(batch, 0)
    for hook in hooks:
        hook.remove()
    taught = torch.cat(seen["multitask"][:1])  # the first loss's: its labeled and unlabeled images together
    assert torch.equal(taught, torch.cat(seen["distiller"])), (taught - torch.cat(seen["distiller"])).abs().max()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6), (loss, expected)
    assert not torch.allclose(loss, labeled_only, rtol=1e-3)  # the unlabeled images count

    taught = []
    teach = Teacher.forward
    monkeypatch.setattr(Teacher, "forward", lambda self, images: taught.append(len(images)) or teach(self, images))
    args = _semi_supervised(ARGS, "face_attributes", label_fraction=0.5)
    main(["fit", *args, "--model.teachers", json.dumps({"face_attributes": teacher}), "--trainer.max_steps", "3",
          "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", "runs"])
    assert taught[1:] == [8 + 8] * 3  # after the probe at setup: each step's 8 labeled and 8 unlabeled images
    with pytest.raises(SystemExit, match="'face_attributes' has no labeled training images"):
        main(["fit", *_semi_supervised(ARGS, "face_attributes", label_fraction=0.0), "--trainer.default_root_dir", "none"])


def test_synth_writes_each_heads_data_in_its_own_layout_for_its_own_reader(tmp_path):
    assert main(["synth", "multitask", str(tmp_path / "mt"), "--option", "tasks=face_attributes+face_embedding"]) == 0
    data = MultiTaskDataModule({"face_attributes": CelebADataModule(str(tmp_path / "mt" / "face_attributes")),
                                "face_embedding": FaceIdentityDataModule(str(tmp_path / "mt" / "face_embedding"))},
                               resolution=48, num_workers=0)
    data.setup("fit")
    celeba, faces = data.datamodules["face_attributes"], data.datamodules["face_embedding"]
    assert len(celeba.datasets["train"]) == 210 and len(celeba.attribute_names) == 10  # write_celeba's defaults
    assert len(faces.datasets["train"]) == 40 * 8 and len(faces.pair_sets[0].pairs) == 10 * 2 * 20  # same + different
    moved = MultiTaskDataModule({"face_attributes": CelebADataModule("elsewhere"),
                                 "face_embedding": FaceIdentityDataModule("elsewhere")},
                                resolution=48, num_workers=0, root=str(tmp_path / "mt"))  # --data-root's override
    assert moved.datamodules["face_embedding"].hparams.resolution == 48  # the shared input size
    assert set(moved.hparams.datamodules["face_attributes"]) == {"class_path", "init_args"}  # what rebuilds it
    assert {name: datamodule.root for name, datamodule in moved.datamodules.items()} == {
        name: datamodule.root for name, datamodule in data.datamodules.items()}
    with pytest.raises(SettingError, match="no task 'faces'"):
        write_multitask(tmp_path / "bad", tasks="face_attributes+faces")


@pytest.mark.slow
def test_a_taught_fit_killed_mid_epoch_resumes_bit_exactly(tmp_path, monkeypatch):
    """A multi-task fit whose embedding head learns from a 32-d teacher through a learned projection: killed
    (SIGKILL) in its second epoch and resumed from the first epoch's last.ckpt, it ends with the very weights,
    projection included, of an uninterrupted fit."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--model", "FaceEmbeddingTask", "--model.embedding_dim", "32", "--model.backbone.alpha", "0.25",
          "--model.resolution", "64", "--data", "FaceIdentityDataModule", "--data.root", "data/faces",
          "--data.synthetic", "true", "--data.num_workers", "0", "--data.batch_size", "8",
          "--data.synthetic_options", "{train_identities: 6, train_images: 4, test_identities: 6, test_images: 3, "
          "folds: 2, pairs_per_fold: 6}", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "teacher"])
    teacher = str(next(Path("teacher").rglob("*.ckpt")))
    taught = [*ARGS, "--model.teachers", json.dumps({"face_embedding": teacher}), "--trainer.max_epochs", "2"]

    def fit(root: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mobilenets.cli", "fit", *taught,
                               "--trainer.default_root_dir", root, *extra], capture_output=True, text=True,
                              timeout=300, env={**LAUNCH_ENV, "PYTHONPATH": str(Path(__file__).parents[1])})

    assert fit("straight").returncode == 0
    killed = fit("interrupted", "--trainer.callbacks+=fault_injection.SignalAtStep",
                 "--trainer.callbacks.step", "7")  # 5 steps an epoch: epoch 1's last.ckpt is the newest
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = fit("interrupted", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, again = (torch.load(max(Path(root).rglob("last.ckpt"), key=lambda p: p.stat().st_mtime),
                                  weights_only=False) for root in ("straight", "interrupted"))
    assert straight["global_step"] == again["global_step"] == 10
    projection = straight["distillation_criteria"]["face_embedding"]
    assert projection and all(torch.equal(value, again["distillation_criteria"]["face_embedding"][key])
                              for key, value in projection.items())
    assert all(torch.equal(value, again["state_dict"][key]) for key, value in straight["state_dict"].items())
