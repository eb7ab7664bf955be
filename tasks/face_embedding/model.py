"""The FaceNet embedding network on MobileNet, and the paper's Table 14."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mobilenets.backbone import MobileNetV1
from mobilenets.backbone.profile import PaperRow, model_rows_table, register_table
from mobilenets.core.tables import Table

__all__ = ["EmbeddingNet", "TABLE14_ROWS", "table14"]


class EmbeddingNet(nn.Module):
    """Backbone -> global pool -> linear -> ``embedding_dim`` -> L2 normalisation (FaceNet's unit sphere)."""

    def __init__(self, backbone: MobileNetV1, embedding_dim: int = 128) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, embedding_dim)

    def forward(self, images: Tensor) -> Tensor:
        """Unit-length embeddings of normalised images."""
        return F.normalize(self.head(self.backbone(images)), dim=1)


_EXTRA_PARAMS = ("the printed {}M exceeds backbone + 128-d head ({:.2f}M): the paper's embedding head is larger than "
                 "a plain linear layer and not described")
# The paper's Table 14 prints "0.75 MobileNet-128" twice; its first such row (166M MACs) is the 0.75 model at 160 px.
TABLE14_ROWS = [
    PaperRow("1.0 MobileNet-160", "14", dict(alpha=1.0, num_classes=128), 160, "286", "4.9",
             "MACs: 289.8M computed; " + _EXTRA_PARAMS.format("4.9", 3.34)),
    PaperRow("1.0 MobileNet-128", "14", dict(alpha=1.0, num_classes=128), 128, "185", "5.5",
             "MACs: the paper truncates 185.5M; " + _EXTRA_PARAMS.format("5.5", 3.34)),
    PaperRow("0.75 MobileNet-160 (printed as 0.75-128)", "14", dict(alpha=0.75, num_classes=128), 160, "166", "3.4",
             "MACs match at 160 px (165.7M), so the row's '128' is a typo; " + _EXTRA_PARAMS.format("3.4", 1.91)),
    PaperRow("0.75 MobileNet-128", "14", dict(alpha=0.75, num_classes=128), 128, "108", "3.8",
             "106.1M computed, no alpha or head size of this body gives 108M; " + _EXTRA_PARAMS.format("3.8", 1.91)),
]


@register_table("table14")
def table14() -> Table:
    """Table 14: FaceNet students (128-d embedding head)."""
    return model_rows_table("table14", "Table 14: FaceNet embeddings (128-d head)", TABLE14_ROWS)
