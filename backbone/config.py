"""The one ``backbone:`` block every task config shares, and how it builds a backbone with its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mobilenets.backbone.mobilenet import Activation, MobileNetV1
from mobilenets.backbone.weights import load_pretrained

__all__ = ["BackboneConfig"]


@dataclass(frozen=True)
class BackboneConfig:
    """The one ``backbone:`` block every task config shares.

    Args:
        alpha: width multiplier.
        pretrained: local path to weights (our checkpoint, a task's Lightning checkpoint, or a timm
            ``mobilenetv1_*`` state dict); never a URL, nothing is downloaded.
        min_depth, activation, drop_rate, output_stride, separable, shallow: see ``MobileNetV1``.
    """

    alpha: float = 1.0
    pretrained: str | None = None
    min_depth: int = 8
    activation: Activation = "relu6"
    drop_rate: float = 0.001
    output_stride: int = 32
    separable: bool = True
    shallow: bool = False

    def build(self, num_classes: int = 0) -> MobileNetV1:
        """Build the backbone (loading ``pretrained`` if set) with a fresh ``num_classes`` classifier."""
        kwargs = asdict(self)
        pretrained = kwargs.pop("pretrained")
        model = MobileNetV1(num_classes=num_classes, **kwargs)
        if pretrained:
            load_pretrained(model, pretrained)
        return model
