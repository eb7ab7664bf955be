"""``mobilenets bench data``: every decoder, the loader and the training step get a row (rates, never asserted)."""

from mobilenets.tasks.classification.bench import bench_data


def test_bench_data_rows(tmp_path):
    table = bench_data(resolution=64, batch_size=4, num_workers=0, images=8, rounds=1, batches=2)
    assert [row[0] for row in table.rows] == [
        "PIL", "TorchCodec (default)", "torchvision.io (deprecated)", "training loader, 0 workers",
        "1.0 MobileNet-64 training step, batch 4, 2 threads (consumes)"]
    assert all(float(row[2].split()[0]) > 0 for row in table.rows)
