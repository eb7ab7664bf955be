"""The one ``backbone:`` block every task config shares, and how it builds a backbone with its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mobilenets.backbone.mobilenet import Activation, MobileNetV1, Padding, check_arguments
from mobilenets.backbone.tf_checkpoint import tf_checkpoint_prefix
from mobilenets.backbone.weights import load_pretrained
from mobilenets.core.checkpoint import checkpoint_type

__all__ = ["BackboneConfig"]


@checkpoint_type
@dataclass(frozen=True)
class BackboneConfig:
    """The one ``backbone:`` block every task config shares.

    Args:
        alpha: width multiplier.
        pretrained: local path to weights: ours (``mobilenets weights convert`` output, a task's Lightning
            checkpoint), a TF-slim checkpoint, a Keras ``.h5``, Hugging Face or timm weights (see
            ``mobilenets.backbone.weights``); never a URL, nothing is downloaded.
        padding: ``"tf_same"`` for weights trained in TensorFlow (TF-slim checkpoints, Keras files, Hugging Face
            ports, and files converted from them); loading such weights into ``"symmetric"`` is refused.
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
    padding: Padding = "symmetric"

    def check(self) -> None:
        """Refuse settings the backbone cannot be built with, and a ``pretrained`` file that does not exist, before
        anything is built (a task whose size comes from the data builds its backbone only at setup)."""
        check_arguments(self.alpha, self.output_stride, self.activation, self.padding)
        if self.pretrained and not (Path(self.pretrained).is_file() or tf_checkpoint_prefix(self.pretrained)):
            raise FileNotFoundError(f"weights file not found: {self.pretrained} (weights must be a local file path)")

    def build(self, num_classes: int = 0) -> MobileNetV1:
        """Build the backbone (loading ``pretrained`` if set) with a fresh ``num_classes`` classifier."""
        kwargs = asdict(self)
        pretrained = kwargs.pop("pretrained")
        model = MobileNetV1(num_classes=num_classes, **kwargs)
        if pretrained:
            load_pretrained(model, pretrained)
        return model
