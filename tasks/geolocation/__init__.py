"""Photo geolocation (the paper's Table 11): PlaNet's adaptive S2 partition and a softmax over its cells.

Dual use: locating photos can locate people. The suite ships no trained geolocation weights.
"""

from mobilenets.tasks.geolocation.data import GeoDataModule
from mobilenets.tasks.geolocation.model import table11
from mobilenets.tasks.geolocation.partition import build_partition, cell_ids, read_partition, write_partition
from mobilenets.tasks.geolocation.synthetic import write_geotagged
from mobilenets.tasks.geolocation.task import DrawGeoPredictions, GeolocationTask

__all__ = ["DrawGeoPredictions", "GeoDataModule", "GeolocationTask", "build_partition", "cell_ids", "read_partition",
           "table11", "write_geotagged", "write_partition"]
