"""PlaNet on MobileNet: the shared backbone with a softmax over S2 cells, and the paper's Table 11 row."""

from __future__ import annotations

from mobilenets.backbone.profile import PaperRow, model_rows_table, register_table
from mobilenets.core.tables import Table
from mobilenets.tasks.heads import MobileNetClassifier

__all__ = ["MobileNetClassifier", "TABLE11_ROWS", "table11"]

# The paper: about 13M parameters (about 3M body + 10M final layer) and about 0.58B MACs. A 1.0-224 body has
# 3.207M parameters, so a 1025-weight row per cell reaches 13M at (13M - 3.207M) / 1025 = 9,554 cells.
PLANET_CELLS = 9_554
TABLE11_ROWS = [
    PaperRow(f"PlaNet-MobileNet, 1.0-224, {PLANET_CELLS:,} cells", "11", dict(alpha=1.0, num_classes=PLANET_CELLS),
             224, "5.8e2", "13"),
]


@register_table("table11")
def table11() -> Table:
    """Table 11: PlaNet-MobileNet at the cell count that gives the paper's 13M parameters."""
    return model_rows_table("table11", "Table 11: PlaNet geolocalization (softmax over S2 cells)", TABLE11_ROWS)
