"""The ``mobilenets`` command: help, profile, and Lightning's subcommands through the real entry point."""

import json
import subprocess
import sys

import pytest
from tiny_task import TinyTask

from mobilenets.cli import main


def test_help_lists_lightning_and_suite_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "profile", "synth", "partition", "evaluate-coco", "verify",
                    "bench"):
        assert f"    {command} " in out or f"    {command}\n" in out


def test_console_script_and_module_entry_points():
    for command in (["mobilenets", "--help"], [sys.executable, "-m", "mobilenets.cli", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "profile" in result.stdout


@pytest.fixture(autouse=True, scope="module")
def own_cache(tmp_path_factory):
    """Profile tables are computed once for these tests and cached in a folder of theirs, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOBILENETS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def test_profile_prints_every_paper_table(capsys):
    assert main(["profile"]) == 0
    out = capsys.readouterr().out
    assert "Table 2" in out and "Table 3" in out and "Tables 4-9" in out
    assert "| 1.0 MobileNet-224 | 4,6,7,8 | 568.7 | 569 | 4.232 | 4.2 | yes |" in out
    assert "| conv 3x3 (stem) | 1.91% | 1.19% |" in out


def test_profile_json_and_single_table(capsys):
    assert main(["profile", "--format", "json", "--table", "table3"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert [t["key"] for t in tables] == ["table3"] and len(tables[0]["rows"]) == 4


def test_profile_one_model(capsys):
    assert main(["profile", "--model", "alpha=0.75,resolution=192"]) == 0
    out = capsys.readouterr().out
    assert "at 192x192" in out and "| total |  |  | 239.273 |" in out  # 0.75 MobileNet-192, 1000 classes


def test_profile_bad_arguments():
    with pytest.raises(SystemExit, match="expected key=value"):
        main(["profile", "--model", "alpha"])
    with pytest.raises(SystemExit, match="unexpected keyword argument 'beta'"):
        main(["profile", "--model", "beta=2"])
    with pytest.raises(SystemExit, match="unknown \\['table99'\\]"):
        main(["profile", "--table", "table99"])
    with pytest.raises(ValueError, match="resolution must be an integer >= 32"):
        main(["profile", "--model", "resolution=16"])


def test_lightning_fit_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model:\n  class_path: tiny_task.TinyTask\n  init_args:\n    backbone: {alpha: 0.25}\n"
        "data:\n  class_path: tiny_task.TinyDataModule\n"
        f"trainer:\n  max_epochs: 1\n  default_root_dir: {tmp_path}\n  enable_progress_bar: false\n"
    )
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2"])
    metrics = list(tmp_path.rglob("metrics.csv")) + list(tmp_path.rglob("events.out.tfevents*"))
    assert metrics, "Lightning's default logger wrote nothing"
    assert list(tmp_path.rglob("config.yaml"))
    (checkpoint,) = tmp_path.rglob("best-epoch=*.ckpt")  # the task's monitor chose it (BaseTask.monitor)
    assert len(list(tmp_path.rglob("last.ckpt"))) == 1  # ExactResume: the state to resume from
    restored = TinyTask.load_from_checkpoint(checkpoint)
    assert restored.backbone_config.alpha == 0.25 and restored.backbone.alpha == 0.25


def test_print_config(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model", "tiny_task.TinyTask", "--data", "tiny_task.TinyDataModule", "--print_config"])
    out = capsys.readouterr().out
    assert "alpha: 1.0" in out and "optimizer: RMSprop" in out


def test_help_imports_nothing_heavy():
    """The command answers --help (its own and its subcommands') without importing torch or Lightning."""
    code = ("import sys\nfrom mobilenets.cli import main\n"
            "for args in (['--help'], ['export', '--help'], ['synth', '--help'], ['bench', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'pytorch_lightning') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_configs_are_found_by_packaged_name(tmp_path, monkeypatch, capsys):
    from mobilenets.configs import CONFIG_DIR, available_configs, config_path

    assert {"demo/dogs.yaml", "paper/coco_ssd300.yaml", "distill/dogs.yaml"} <= set(available_configs())
    monkeypatch.chdir(tmp_path)  # nothing of the repository here
    assert config_path("demo/dogs.yaml") == CONFIG_DIR / "demo" / "dogs.yaml"
    assert config_path("configs/demo/dogs.yaml") == CONFIG_DIR / "demo" / "dogs.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("trainer: {max_epochs: 1}\n")
    assert config_path(str(own)) == own  # a file wins over a packaged name
    with pytest.raises(FileNotFoundError, match="demo/dogs.yaml"):  # the error lists what is packaged
        config_path("demo/dog.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", "demo/dogs.yaml", "--print_config"])
    assert "class_path: mobilenets.tasks.classification.ClassificationTask" in capsys.readouterr().out


def test_profile_tables_are_read_back_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOBILENETS_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["profile", "--table", "table3"]) == 0
    assert "### Table 3" in capsys.readouterr().out
    (cached,) = (tmp_path / "cache").glob("profile-*.json")
    tables = json.loads(cached.read_text())
    assert [table["key"] for table in tables][:3] == ["table2", "table3", "imagenet"]
    assert {"table10", "table11", "table12", "table13", "table14"} <= {table["key"] for table in tables}
    tables[1]["title"] = "Table 3, as cached"
    cached.write_text(json.dumps(tables))
    assert main(["profile", "--table", "table3"]) == 0
    assert "### Table 3, as cached" in capsys.readouterr().out


def test_profile_cache_key_follows_code_and_versions(tmp_path):
    from mobilenets.cli.tables import _package_folders, cache_key

    (tmp_path / "module.py").write_text("x = 1\n")
    key = cache_key([tmp_path], ["torch==2.14.1"])
    assert cache_key([tmp_path], ["torch==2.14.1"]) == key
    assert cache_key([tmp_path], ["torch==2.15.0"]) != key
    (tmp_path / "module.py").write_text("x = 2\n")
    assert cache_key([tmp_path], ["torch==2.14.1"]) != key
    folders = {folder.name for folder in _package_folders()}
    assert {"core", "backbone", "classification", "detection", "geolocation"} <= folders


def test_constructor_errors_end_the_command_in_one_line(tmp_path, monkeypatch):
    """A missing teacher checkpoint or a bad alpha is reported as the constructor says it, not inside
    jsonargparse's union-type traceback."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^mobilenets: checkpoint not found: .*missing/teacher.ckpt$"):
        main(["fit", "--config", "distill/dogs.yaml", "--model.init_args.teacher.checkpoint", "missing/teacher.ckpt"])
    with pytest.raises(SystemExit, match=r"^mobilenets: alpha must be a positive number, got -1.0$"):
        main(["fit", "--config", "demo/dogs.yaml", "--model.init_args.backbone.alpha", "-1"])
