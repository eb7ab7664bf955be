"""Resuming: a fit killed mid-epoch and resumed with ``--ckpt_path last`` ends bit-identical to one never
interrupted, with the random parts of a long recipe on (an augmentation policy, random erasing, mixup / cutmix,
weight EMA); SIGTERM leaves a resumable ``last.ckpt``; a full disk never leaves a checkpoint looking complete."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import logged_metrics

from mobilenets.cli import main
from mobilenets.tasks.data.resume import AtomicCheckpointIO, find_last_checkpoint

TESTS = Path(__file__).resolve().parent

CONFIG = """
seed_everything: 0
model:
  class_path: ClassificationTask
  init_args: {{num_classes: 3, backbone: {{alpha: 0.25}}, resolution: 48, lr: 0.05, mixup_alpha: 0.2, cutmix_alpha: 1.0}}
data:
  class_path: DogsDataModule
  init_args:
    root: {root}
    synthetic: true
    synthetic_options: {{num_classes: 3, train_per_class: 8, test_per_class: 1}}
    batch_size: 4
    num_workers: 0
    val_fraction: 0.25
    augmentation: {{policy: trivialaugment, random_erasing: 0.5}}
trainer:
  max_epochs: 3
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {run}
  callbacks:
    - class_path: pytorch_lightning.callbacks.EMAWeightAveraging
      init_args: {{decay: 0.9}}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{monitor: val/top1, mode: max, save_last: true}}
{extra}"""


def _fit(tmp_path: Path, run: str, extra: str = "", *args: str) -> subprocess.CompletedProcess:
    """``mobilenets fit`` in a fresh process (as a user or a scheduler starts it), one thread for repeatability."""
    config = tmp_path / f"{run}.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "dogs", run=tmp_path / run, extra=extra))
    return subprocess.run([sys.executable, "-m", "mobilenets.cli", "fit", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)})


def _signal_at(step: int, name: str) -> str:
    return (f"    - class_path: fault_injection.SignalAtStep\n"
            f"      init_args: {{step: {step}, signal_name: {name}}}\n")


def _final(run: Path) -> dict:
    return torch.load(find_last_checkpoint(run), map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(tmp_path):
    """18 training images in batches of 4: 4 steps an epoch. SIGKILL after step 6 (mid epoch 2) leaves epoch 1's
    last.ckpt; the resumed run redoes epoch 2 and finishes with the very same weights and metrics."""
    assert _fit(tmp_path, "straight").returncode == 0
    killed = _fit(tmp_path, "interrupted", _signal_at(6, "SIGKILL"))
    assert killed.returncode == -9 and _final(tmp_path / "interrupted")["global_step"] == 4
    resumed = _fit(tmp_path, "interrupted", "", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[mobilenets] resuming from" in resumed.stderr
    straight, again = _final(tmp_path / "straight"), _final(tmp_path / "interrupted")
    assert straight["global_step"] == again["global_step"] == 12
    for weights in ("state_dict", "current_model_state"):  # EMAWeightAveraging: the averaged and the trained ones
        assert straight[weights].keys() == again[weights].keys()
        assert all(torch.equal(straight[weights][k], again[weights][k]) for k in straight[weights])
    assert not all(torch.equal(straight["state_dict"][k], straight["current_model_state"][k])
                   for k in straight["state_dict"])  # the average is not the last weights
    metric = [[row["val/top1"] for row in logged_metrics(tmp_path / run) if row.get("val/top1")]
              for run in ("straight", "interrupted")]
    assert metric[0][-2:] == metric[1][-2:]  # epochs 2 and 3: the resumed run's, identical


@pytest.mark.slow
def test_sigterm_leaves_a_resumable_checkpoint(tmp_path):
    stopped = _fit(tmp_path, "preempted", _signal_at(6, "SIGTERM"))
    assert "SIGTERM: saved" in stopped.stderr  # Lightning stops at the next batch and exits
    saved = _final(tmp_path / "preempted")
    assert saved["global_step"] == 6 and "ExactResume" in saved["callbacks"]
    resumed = _fit(tmp_path, "preempted", "", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _final(tmp_path / "preempted")["epoch"] == 2 and not list(tmp_path.rglob("*.partial"))


def test_a_full_disk_never_leaves_a_checkpoint_looking_complete(tmp_path, monkeypatch):
    """The second checkpoint write runs out of space half way: the error surfaces, the first last.ckpt is intact
    and loads, and no partial file is left behind."""
    real_save, calls = torch.save, []

    def save_until_full(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) < 3:  # epoch 1's best and last checkpoints
            return real_save(obj, handle, *args, **kwargs)
        handle.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.chdir(tmp_path)
    main(["synth", "classification", "dogs", "--option", "num_classes=3", "--option", "train_per_class=4"])
    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(OSError, match="No space left on device"):
        main(["fit", "--model", "ClassificationTask", "--model.num_classes", "3", "--model.backbone.alpha", "0.25",
              "--model.resolution", "32", "--data", "DogsDataModule", "--data.root", "dogs", "--data.batch_size", "4",
              "--data.num_workers", "0", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", "run", "--trainer.callbacks+=ModelCheckpoint",
              "--trainer.callbacks.save_last", "true"])
    monkeypatch.setattr(torch, "save", real_save)
    last = find_last_checkpoint("run")
    assert torch.load(last, weights_only=False)["epoch"] == 0
    assert not list(Path("run").rglob("*.partial"))


def test_atomic_checkpoint_io_replaces_only_when_complete(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "c" / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    with pytest.raises(AttributeError, match="pickle"):
        io.save_checkpoint({"step": 2, "bad": lambda: None}, path)  # cannot be pickled: fails mid-write
    assert torch.load(path, weights_only=False) == {"step": 1} and os.listdir(path.parent) == ["last.ckpt"]


def test_a_fit_stopped_by_max_steps_inside_an_epoch_validates_its_last_steps(tmp_path, monkeypatch):
    """2 batches an epoch (9 training images, the last partial batch dropped), ``max_steps`` 3: besides the first
    epoch's validation, one after step 3, whose score the monitored checkpoint of step 3 records."""
    monkeypatch.chdir(tmp_path)
    main(["synth", "classification", "dogs", "--option", "num_classes=3", "--option", "train_per_class=4"])
    main(["fit", "--model", "ClassificationTask", "--model.num_classes", "3", "--model.backbone.alpha", "0.25",
          "--model.resolution", "32", "--data", "DogsDataModule", "--data.root", "dogs", "--data.batch_size", "4",
          "--data.val_fraction", "0.25", "--data.num_workers", "0", "--trainer.max_steps", "3",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "run",
          "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor", "val/top1",
          "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "{step}"])
    validations = [row for row in logged_metrics(Path("run")) if row["val/top1"]]
    assert [int(row["step"]) + 1 for row in validations] == [2, 3]  # logged at the step index, from 0
    final = torch.load(next(Path("run").rglob("step=3.ckpt")), weights_only=False)["callbacks"]
    (scores,) = [state["current_score"] for key, state in final.items() if key.startswith("ModelCheckpoint")]
    assert float(scores) == pytest.approx(float(validations[-1]["val/top1"]))
