"""Photo geolocation (the paper's Table 11): PlaNet's adaptive S2 partition and a softmax over its cells.

Dual use: locating photos can locate people. The suite ships no trained geolocation weights.
"""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "DrawGeoPredictions",
    "GeoDataModule",
    "Geolocation",
    "GeolocationTask",
    "build_partition",
    "cell_ids",
    "read_partition",
    "table11",
    "write_geotagged",
    "write_partition",
]
__getattr__ = lazy_exports(__name__, {
    "GeoDataModule": "data",
    "table11": "model",
    "build_partition": "partition", "cell_ids": "partition", "read_partition": "partition",
    "write_partition": "partition",
    "write_geotagged": "synthetic",
    "DrawGeoPredictions": "task", "Geolocation": "task", "GeolocationTask": "task",
})
