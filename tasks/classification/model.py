"""The Stanford Dogs classifier (the shared backbone + FC head, as the paper fine-tunes it) and Table 10."""

from __future__ import annotations

from mobilenets.backbone.profile import PaperRow, model_rows_table, register_table
from mobilenets.core.tables import Table
from mobilenets.tasks.heads import MobileNetClassifier

__all__ = ["MobileNetClassifier", "TABLE10_ROWS", "table10"]


TABLE10_NOTE = "the paper prints the 1000-class ImageNet model's MACs ({:.1f}M); a 120-class FC has 0.9M fewer"
TABLE10_ROWS = [
    PaperRow("1.0 MobileNet-224", "10", dict(alpha=1.0, num_classes=120), 224, "569", "3.3", TABLE10_NOTE.format(568.7)),
    PaperRow("0.75 MobileNet-224", "10", dict(alpha=0.75, num_classes=120), 224, "325", "1.9"),
    PaperRow("1.0 MobileNet-192", "10", dict(alpha=1.0, num_classes=120), 192, "418", "3.3", TABLE10_NOTE.format(418.1)),
    PaperRow("0.75 MobileNet-192", "10", dict(alpha=0.75, num_classes=120), 192, "239", "1.9"),
]


@register_table("table10")
def table10() -> Table:
    """Table 10: Stanford Dogs models (120 classes)."""
    return model_rows_table("table10", "Table 10: Stanford Dogs (120 classes)", TABLE10_ROWS)
