"""The face attribute network (the shared backbone + one logit per attribute) and the paper's Table 12."""

from __future__ import annotations

from mobilenets.backbone.profile import PaperRow, model_rows_table, register_table
from mobilenets.core.tables import Table
from mobilenets.tasks.heads import MobileNetClassifier

__all__ = ["MobileNetClassifier", "TABLE12_ROWS", "table12"]

TABLE12_ROWS = [
    PaperRow("1.0 MobileNet-224", "12", dict(alpha=1.0, num_classes=40), 224, "568", "3.2"),
    PaperRow("0.5 MobileNet-224", "12", dict(alpha=0.5, num_classes=40), 224, "149", "0.8"),
    PaperRow("0.25 MobileNet-224", "12", dict(alpha=0.25, num_classes=40), 224, "45", "0.2",
             "45M is out of reach for this body: the same 0.25-224 body costs 41M in the paper's own Table 6, "
             "and a 40-way head adds 0.01M; the parameters do match"),
    PaperRow("1.0 MobileNet-128", "12", dict(alpha=1.0, num_classes=40), 128, "185", "3.2"),
    PaperRow("0.5 MobileNet-128", "12", dict(alpha=0.5, num_classes=40), 128, "48", "0.8",
             "the paper truncates 48.7M"),
    PaperRow("0.25 MobileNet-128", "12", dict(alpha=0.25, num_classes=40), 128, "15", "0.2",
             "15M is out of reach: the 0.25 body at 128 px costs 13.3M (Table 6's 41M x (128/224)^2); "
             "the parameters do match"),
]


@register_table("table12")
def table12() -> Table:
    """Table 12: face attribute students (40 attributes)."""
    return model_rows_table("table12", "Table 12: face attributes (40-way multi-label head)", TABLE12_ROWS)
