"""``mobilenets demo --quick`` end to end: the stages run, the report is complete, a re-run reuses it. To keep the
suite short the test runs the five task stages and one sweep model, not the other five (which repeat the dogs
stage at other settings) nor the distillation stages; CI's wheel check runs the whole quick demo and checks its
report's tables, the distillation one included."""

import json
import math

import pytest
from PIL import Image

from mobilenets.cli.demo import STAGES

FILES = ["report.md", "metrics.json", "accuracy_vs_macs.png", "accuracy_vs_params.png", "detection.png",
         "geolocation.png"]


@pytest.mark.slow
def test_quick_demo_writes_a_complete_report_and_reuses_it(tmp_path, monkeypatch, capsys):
    from mobilenets.cli.demo import run_demo

    monkeypatch.chdir(tmp_path)
    stages = [stage for stage in STAGES
              if not stage.name.startswith(("sweep_", "distill_")) or stage.name == "sweep_0.25_96"]
    run_demo("report", quick=True, stages=stages)
    report = tmp_path / "report"
    for name in FILES:
        assert (report / name).stat().st_size > 0, name
        if name.endswith(".png"):
            Image.open(report / name).verify()
    results = json.loads((report / "metrics.json").read_text())
    assert set(results) == {stage.name for stage in stages}
    for stage in stages:
        result = results[stage.name]
        assert set(result["metrics"]) == set(stage.metrics)
        assert all(math.isfinite(value) and 0 <= value <= 1 for value in result["metrics"].values()), result
        assert result["macs_m"] > 0 and result["params_m"] > 0
    text = (report / "report.md").read_text()
    for heading in ("Table 10", "Table 11", "Table 12", "Table 13", "Table 14", "Tables 6 and 7"):
        assert heading in text
    assert [(r["alpha"], r["resolution"]) for r in results.values() if r["stage"].startswith("sweep_")] == [(0.25, 96)]
    assert sorted(stage.options["alpha"] for stage in STAGES if stage.name.startswith("sweep_")) == [0.25, 0.25, 0.5,
                                                                                                   0.5, 1.0, 1.0]
    capsys.readouterr()
    run_demo("report", quick=True, stages=stages)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[demo]") and "|" in line]
    assert len(lines) == len(stages) and all(line.endswith("cached") for line in lines)


def test_fresh_starts_over_and_an_empty_run_still_writes_a_report(tmp_path):
    from mobilenets.cli.demo import run_demo

    (tmp_path / "report" / "stages").mkdir(parents=True)
    (tmp_path / "report" / "stages" / "old.json").write_text("{}")
    report = run_demo(tmp_path / "report", fresh=True, stages=[])
    assert not (tmp_path / "report" / "stages" / "old.json").exists()
    assert report.read_text().startswith("# MobileNets demo report")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text()) == {}
