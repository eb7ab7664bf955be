"""S2 cell ids equal s2sphere's bit for bit; the adaptive partition keeps its invariants; files round-trip."""

import numpy as np
import pytest
import s2sphere

from mobilenets.tasks.geolocation.partition import (
    build_partition,
    build_partitions,
    cell_ids,
    parent_ids,
    read_partition,
    validate_coordinates,
    write_partition,
)


def _reference(lat, lon):
    return np.array([s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).id() for a, b in zip(lat, lon)],
                    dtype=np.uint64)


def test_cell_ids_equal_s2sphere_over_the_sphere():
    rng = np.random.default_rng(0)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 20_000)))
    lon = rng.uniform(-180, 180, 20_000)
    special_lat = [90, -90, 89.9999999, -89.9999999, 0, 0, 0, 0, 0, 35.264389682754654, -35.264389682754654, 45, 10, -10]
    special_lon = [0, 0, 179.9999999, -179.9999999, 180, -180, 90, -90, 0, 45, -135, 135, 180, -180]
    lat, lon = np.concatenate([lat, special_lat]), np.concatenate([lon, special_lon])
    ours = cell_ids(lat, lon)
    assert np.array_equal(ours, _reference(lat, lon))
    assert set((ours >> np.uint64(61)).tolist()) == {0, 1, 2, 3, 4, 5}  # every cube face


def test_parents_equal_s2sphere():
    rng = np.random.default_rng(1)
    leaves = cell_ids(rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500))
    for level in (0, 1, 7, 13, 29, 30):
        expected = [s2sphere.CellId(int(c)).parent(level).id() for c in leaves]
        assert parent_ids(leaves, level).tolist() == expected


def test_partition_invariants():
    rng = np.random.default_rng(2)
    centres = [(48.85, 2.35, 3000), (40.7, -74.0, 1500), (35.7, 139.7, 800), (-33.9, 151.2, 200), (64.1, -21.9, 20)]
    lat = np.concatenate([rng.normal(a, 0.5, n) for a, _, n in centres] + [rng.uniform(-60, 70, 300)])
    lon = np.concatenate([rng.normal(b, 0.5, n) for _, b, n in centres] + [rng.uniform(-180, 180, 300)])
    t1, t2, max_level = 400, 30, 12
    partition = build_partition(lat, lon, t1=t1, t2=t2, min_level=2, max_level=max_level)
    levels = [s2sphere.CellId(int(c)).level() for c in partition.cells]
    assert all(t2 <= n <= t1 or level == max_level for n, level in zip(partition.counts, levels))
    for i, a in enumerate(partition.cells):  # disjoint: no cell contains another
        for b in partition.cells[i + 1:]:
            assert not s2sphere.CellId(int(a)).intersects(s2sphere.CellId(int(b)))
    classes = partition.classify(cell_ids(lat, lon))
    kept = classes >= 0
    assert kept.sum() == partition.counts.sum()  # every kept photo falls in exactly one cell
    assert np.bincount(classes[kept], minlength=len(partition)).tolist() == partition.counts.tolist()
    for cls in range(len(partition)):
        assert partition.lat_mean[cls] == pytest.approx(lat[classes == cls].mean())
    assert len(partition) > 5 and not kept.all()  # Iceland's 20 photos fall below t2


def test_hierarchy_links_fine_cells_to_coarse_ones():
    rng = np.random.default_rng(3)
    lat, lon = rng.normal(48.85, 2, 4000), rng.normal(2.35, 2, 4000)
    (coarse, fine), (parents,) = build_partitions(lat, lon, [(2000, 20), (300, 20)], max_level=12)
    assert len(fine) > len(coarse)
    for cell, parent in zip(fine.cells, parents):
        if parent >= 0:
            assert s2sphere.CellId(int(coarse.cells[parent])).contains(s2sphere.CellId(int(cell)))


def test_partition_file_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    partition = build_partition(rng.normal(10, 5, 2000), (rng.normal(179, 2, 2000) + 180) % 360 - 180, t1=300, t2=10)
    write_partition(partition, tmp_path / "p.csv")
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean"
    again = read_partition(tmp_path / "p.csv")
    assert again.cells.tolist() == partition.cells.tolist() and again.counts.tolist() == partition.counts.tolist()
    assert np.allclose(again.lon_mean, partition.lon_mean, atol=1e-6)
    assert np.all(np.abs(partition.lon_mean) > 170)  # cells across the antimeridian keep their longitude


def test_bad_coordinates_name_the_row():
    lat, lon = np.array([10.0, 95.0, np.nan, 0.0]), np.array([20.0, 0.0, 0.0, -181.0])
    with pytest.raises(ValueError, match=r"here row 1: coordinate \(95.0, 0.0\) .* \(and 2 more\)"):
        validate_coordinates(lat, lon, "here")
    valid, skipped = validate_coordinates(lat, lon, "here", skip_bad=True)
    assert valid.tolist() == [True, False, False, False] and len(skipped) == 3
    with pytest.raises(ValueError, match="t2 <= t1"):
        build_partition(lat[:1], lon[:1], t1=5, t2=10)


def test_a_partition_without_cells_says_which_t2_works(tmp_path):
    lat, lon = np.array([10.0, 10.001, 10.002, -40.0]), np.array([20.0, 20.0, 20.001, 100.0])
    with pytest.raises(ValueError, match=r"no S2 cell keeps t2=5 of the 4 photos \(the fullest unsplit cell holds 3\); "
                                         r"lower t2 to at most 3"):
        build_partition(lat, lon, t1=10, t2=5)
    assert len(build_partition(lat, lon, t1=10, t2=3)) == 1
    empty = tmp_path / "partition.csv"
    empty.write_text("class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n")
    with pytest.raises(ValueError, match="partition.csv: the partition has no cells; delete it and rebuild it"):
        read_partition(empty)
