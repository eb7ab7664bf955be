"""``mobilenets bench deploy``: the grid of models and runtimes, the timm reference rows, and the plots."""

import json

from mobilenets.backbone import MobileNetV1, profile_model
from mobilenets.cli import main


def test_bench_deploy_rows_reference_and_plots(tmp_path, capsys):
    assert main(["bench", "deploy", "--alphas", "0.25", "--resolutions", "64", "--rounds", "3",
                 "--batch-sizes", "2", "--plot", str(tmp_path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    (table,) = json.loads(out[out.index("["):])
    models = [row[0] for row in table["rows"]]
    assert models == ["timm-1.0-64", "ours-0.25-64"]
    expected_macs = [profile_model(MobileNetV1(alpha=alpha), 64).macs / 1e6 for alpha in (1.0, 0.25)]
    assert [row[1] for row in table["rows"]] == [round(m, 1) for m in expected_macs]  # timm's 1.0 counts as ours
    columns = table["columns"]
    for row in table["rows"]:
        times = [float(row[columns.index(name)].split()[0])
                 for name in ("eager ms", "onnx fp32 ms", "onnx int8 ms", "openvino int8 ms")]
        assert all(t > 0 for t in times) and float(row[5][:-1]) > 0 and float(row[7][:-1]) > 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["latency_vs_macs.png"]  # no paper accuracy at 64 px


def test_accuracy_plot_where_the_paper_gives_accuracy(tmp_path):
    from mobilenets.deploy.bench import DeployRow, deploy_plots, deploy_table

    rows = [DeployRow("timm-1.0-224", 1.0, 224, 568.7, 9.0, "NCHW", 4.0, 2.0, 100, 250, 600, 1.5, 700),
            DeployRow("ours-1.0-224", 1.0, 224, 568.7, 8.0, "NCHW", 3.9, 1.9, 120, 240, 590, 1.3, 720),
            DeployRow("ours-0.5-224", 0.5, 224, 149.5, 3.0, "NCHW", 1.2, 0.8, 400, 900, 1500, 0.6, 1700)]
    paths = deploy_plots(rows, tmp_path)
    assert [p.name for p in paths] == ["latency_vs_macs.png", "accuracy_vs_latency.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    table = deploy_table(rows, threads=2, batch_size=32)
    assert table.rows[1][-1] == "0.975 / 0.889" and table.rows[2][-1] == ""  # ours/timm only where timm exists
    assert table.rows[1][5] == "2.05x" and table.rows[1][7] == "3.00x"
