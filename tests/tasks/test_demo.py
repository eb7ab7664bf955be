"""``mobilenets demo --quick`` end to end: the stages run, the report is complete, a re-run reuses it. To keep the
suite short the test runs the five task stages and one sweep model, not the other three (which repeat the dogs
stage at other settings) nor the distillation experiment; CI's wheel check runs the whole quick demo and checks its
report's tables, the distillation one included."""

import json
import math

import pytest
from PIL import Image

from mobilenets.cli.demo import STAGES, DemoExperiment, demo_experiments

FILES = ["report.md", "metrics.json", "accuracy_vs_macs.png", "accuracy_vs_params.png", "detection.png",
         "geolocation.png"]


@pytest.mark.slow
def test_quick_demo_writes_a_complete_report_and_reuses_it(tmp_path, monkeypatch, capsys):
    from mobilenets.cli.demo import run_demo

    monkeypatch.chdir(tmp_path)
    planned = {plan.experiment.name: plan for plan in demo_experiments()}
    assert [run.name for run in planned["sweep"].experiment.runs] == ["0.5_128", "0.25_128", "0.5_96", "0.25_96"]
    assert [run.name for run in planned["distill_dogs"].experiment.runs] == ["teacher", "all_labels", "labels_only",
                                                                             "distilled", "no_labels"]
    for name in ("sweep", "distill_dogs"):  # the packaged experiments' runs, at the demo's batch
        assert all(run.set["data.init_args.batch_size"] == 16 for run in planned[name].experiment.runs)
    assert [run.name for run in planned["multitask"].experiment.runs] == ["attributes_alone", "embedding_alone",
                                                                          "joint"]
    sweep, multitask = planned["sweep"], planned["multitask"]
    experiments = [DemoExperiment(sweep.experiment.only(["0.25_96"]), sweep.steps, sweep.data),
                   DemoExperiment(multitask.experiment.only(["joint"]), multitask.steps, multitask.data)]
    run_demo("report", quick=True, stages=STAGES, experiments=experiments)
    report = tmp_path / "report"
    for name in FILES:
        assert (report / name).stat().st_size > 0, name
        if name.endswith(".png"):
            Image.open(report / name).verify()
    saved = json.loads((report / "metrics.json").read_text())
    results = saved["stages"]
    assert set(results) == {stage.name for stage in STAGES}
    for stage in STAGES:
        result = results[stage.name]
        assert set(result["metrics"]) == set(stage.metrics)
        assert all(math.isfinite(value) and 0 <= value <= 1 for value in result["metrics"].values()), result
        assert result["macs_m"] > 0 and result["params_m"] > 0
    text = (report / "report.md").read_text()
    for heading in ("Table 10", "Table 11", "Table 12", "Table 13", "Table 14", "Tables 6 and 7"):
        assert heading in text
    [row] = saved["experiments"]["sweep"]["summary"]
    assert (row["alpha"], row["resolution"], row["steps"], row["seeds"]) == (0.25, 96, 3, 1)
    assert "| 0.25 MobileNet-96 |" in text and "one seed" in text
    [joint] = saved["experiments"]["multitask"]["runs"]  # both heads' metrics; their data inside the report folder
    assert set(joint["metrics"]) == {"test/face_attributes/mAP", "test/face_embedding/accuracy"}
    assert (report / "data" / "demo" / "celeba").is_dir() and (report / "data" / "demo" / "faces").is_dir()
    assert "| both heads, one body (MultiTask), fixed loss weights 1/1 |" in text
    capsys.readouterr()
    run_demo("report", quick=True, stages=STAGES, experiments=experiments)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[demo]") and "|" in line]
    assert len(lines) == len(STAGES) + 2 and all(line.endswith("cached") for line in lines)


def test_fresh_starts_over_and_an_empty_run_still_writes_a_report(tmp_path):
    from mobilenets.cli.demo import run_demo

    (tmp_path / "report" / "stages").mkdir(parents=True)
    (tmp_path / "report" / "stages" / "old.json").write_text("{}")
    report = run_demo(tmp_path / "report", fresh=True, stages=[], experiments=[])
    assert not (tmp_path / "report" / "stages" / "old.json").exists()
    assert report.read_text().startswith("# MobileNets demo report")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text()) == {"stages": {}, "experiments": {}}
