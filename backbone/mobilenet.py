"""MobileNet v1 (Howard et al. 2017), exact to the paper's Table 1.

Reads top to bottom: the two building blocks, the layer table, the network, then the constructors.
Layers are named by the paper's numbering (``layer0`` is the stem, ``layer1`` .. ``layer13`` the
depthwise-separable blocks), so feature endpoints, checkpoints and the profiler all speak the paper's
language. The width multiplier ``alpha`` follows TF-slim (``max(int(c * alpha), min_depth)``); the
resolution multiplier is simply the input size, which is free (>= 32).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "LAYERS",
    "SHALLOW_REMOVED",
    "ConvBNAct",
    "TFSamePad2d",
    "DepthwiseSeparable",
    "MobileNetV1",
    "check_resolution",
    "fold_batchnorm",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

Activation = Literal["relu", "relu6"]
Padding = Literal["symmetric", "tf_same"]

# torchvision / ImageNet statistics: the default normalisation of a backbone trained here from scratch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Table 1: (paper layer number, stride, output channels at alpha = 1). Layer 0 is the 3x3 stem conv.
LAYERS: tuple[tuple[int, int, int], ...] = (
    (0, 2, 32),
    (1, 1, 64),
    (2, 2, 128),
    (3, 1, 128),
    (4, 2, 256),
    (5, 1, 256),
    (6, 2, 512),
    (7, 1, 512),
    (8, 1, 512),
    (9, 1, 512),
    (10, 1, 512),
    (11, 1, 512),
    (12, 2, 1024),
    (13, 1, 1024),  # Table 1 prints "s2" here; the released model (and the 7x7 pool) use stride 1.
)
# Table 5's shallow MobileNet drops the five 14x14x512 blocks.
SHALLOW_REMOVED = frozenset({7, 8, 9, 10, 11})


def _activation(name: Activation) -> nn.Module:
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"activation must be 'relu' or 'relu6', got {name!r}")


class TFSamePad2d(nn.Module):
    """Zero padding as TensorFlow's ``padding="SAME"``: ``ceil(size / stride)`` outputs, the odd pixel on the
    bottom/right, worked out from the input size at run time (so any resolution, and exported graphs, agree).

    Written here because torch's ``Conv2d(padding="same")`` refuses strides > 1 and torchvision has no such layer;
    timm's ``pad_same`` is the same rule.
    """

    def __init__(self, kernel_size: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.extent = (kernel_size - 1) * dilation + 1
        if self.extent < stride:
            raise ValueError(f"TF-same padding of a {kernel_size}x{kernel_size} conv (dilation {dilation}) with "
                             f"stride {stride} would crop, not pad")

    def _amount(self, size: int) -> tuple[int, int]:
        # ceil(size / stride) outputs need (outputs - 1) * stride + extent - size pixels of padding, i.e. this
        # (no max() or branch: torch.fx and torch.export keep it symbolic, so traced graphs take any size).
        total = (-size) % self.stride + self.extent - self.stride
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self._amount(x.shape[-2])
        left, right = self._amount(x.shape[-1])
        return nn.functional.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


def _check_padding(padding: str) -> None:
    if padding not in ("symmetric", "tf_same"):
        raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")


def check_arguments(alpha: float, output_stride: int, activation: str, padding: str) -> None:
    """Refuse ``MobileNetV1`` arguments it cannot build, before anything is built."""
    if not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    _activation(activation)
    _check_padding(padding)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU, the unit every MobileNet layer is made of.

    ``padding="tf_same"`` puts a ``TFSamePad2d`` before a strided conv (stride 1 SAME is symmetric anyway),
    as weights trained in TensorFlow expect; it adds no parameters, so state dicts are the same either way.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: Activation = "relu6",
        padding: Padding = "symmetric",
    ) -> None:
        _check_padding(padding)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        conv_padding = dilation * (kernel_size - 1) // 2
        if padding == "tf_same" and stride > 1:
            layers["pad"] = TFSamePad2d(kernel_size, stride, dilation)
            conv_padding = 0
        layers["conv"] = nn.Conv2d(in_chs, out_chs, kernel_size, stride, conv_padding, dilation, groups, bias=False)
        layers["bn"] = nn.BatchNorm2d(out_chs)
        layers["act"] = _activation(activation)
        super().__init__(layers)


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (Figure 3, right)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dilation: int = 1,
        activation: Activation = "relu6",
        padding: Padding = "symmetric",
    ) -> None:
        super().__init__(
            OrderedDict(
                dw=ConvBNAct(in_chs, in_chs, 3, stride, dilation, groups=in_chs, activation=activation,
                             padding=padding),
                pw=ConvBNAct(in_chs, out_chs, 1, activation=activation),
            )
        )


class MobileNetV1(nn.Module):
    """MobileNet v1 with width multiplier, free input size, feature endpoints and the paper's ablations.

    Args:
        alpha: width multiplier; every layer gets ``max(int(c * alpha), min_depth)`` channels.
        num_classes: size of the final FC; 0 leaves no classifier (``forward`` returns pooled features).
        min_depth: the smallest channel count alpha may produce (TF-slim's 8).
        activation: ``"relu6"`` (TF release, timm) or ``"relu"`` (the paper's text).
        drop_rate: dropout before the FC (TF-slim keeps 0.999).
        output_stride: 32 (the paper), or 16 / 8 by replacing later strides with dilation, as TF-slim offers.
        separable: False builds Table 4's "Conv MobileNet" with full 3x3 convolutions in every block.
        shallow: True builds Table 5's shallow MobileNet without the five 14x14x512 blocks.
        in_chans: input channels.
        padding: ``"symmetric"`` (PyTorch's, timm's default) or ``"tf_same"`` (TensorFlow's SAME, asymmetric on
            strided layers), which weights trained in TensorFlow (TF-slim, Keras, Hugging Face ports) need.
        mean: the input normalisation's mean these weights expect. Kept as a buffer so it travels in every
            checkpoint with the weights (timm's is 0.5, ours ImageNet's); see ``normalize``.
        std: the input normalisation's standard deviation, kept and travelling alike.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int = 1000,
        min_depth: int = 8,
        activation: Activation = "relu6",
        drop_rate: float = 0.001,
        output_stride: int = 32,
        separable: bool = True,
        shallow: bool = False,
        in_chans: int = 3,
        padding: Padding = "symmetric",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        check_arguments(alpha, output_stride, activation, padding)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes!r}")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"mean and std need one value per input channel ({in_chans}), got {mean!r}, {std!r}")
        self.config = dict(
            alpha=alpha, num_classes=num_classes, min_depth=min_depth, activation=activation, drop_rate=drop_rate,
            output_stride=output_stride, separable=separable, shallow=shallow, in_chans=in_chans, padding=padding,
        )
        self.padding = padding
        self.alpha = alpha
        self.min_depth = min_depth
        self.output_stride = output_stride
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.feature_info: list[dict] = []
        current_stride, dilation, in_chs = 1, 1, in_chans
        for number, stride, chs in LAYERS:
            if shallow and number in SHALLOW_REMOVED:
                continue
            out_chs = self.scale_channels(chs)
            # TF-slim's atrous rule: once the target stride is reached, later strides become dilation.
            if number > 0 and current_stride * stride > output_stride:
                layer_dilation, dilation, stride = dilation, dilation * stride, 1
            else:
                layer_dilation = dilation
                current_stride *= stride
            if number == 0:
                layer = ConvBNAct(in_chs, out_chs, 3, stride, activation=activation, padding=padding)
            elif separable:
                layer = DepthwiseSeparable(in_chs, out_chs, stride, layer_dilation, activation, padding)
            else:
                layer = ConvBNAct(in_chs, out_chs, 3, stride, layer_dilation, activation=activation, padding=padding)
            name = f"layer{number}"
            layers[name] = layer
            self.feature_info.append(dict(layer=number, name=name, num_chs=out_chs, reduction=current_stride))
            in_chs = out_chs
        self.features = nn.Sequential(layers)
        self.num_features = in_chs
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.drop_rate = drop_rate
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier: nn.Module = nn.Linear(in_chs, num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def scale_channels(self, channels: int) -> int:
        """Apply the width multiplier the TF-slim way."""
        return max(int(channels * self.alpha), self.min_depth)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He init over fan-out per group, as timm's EfficientNet: torch's own fan-out ignores groups and
                # would shrink every depthwise layer's output by sqrt(channels).
                kh, kw = module.kernel_size
                fan_out = kh * kw * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    @property
    def layer_numbers(self) -> list[int]:
        """Paper layer numbers present in this network (the shallow variant lacks 7..11)."""
        return [info["layer"] for info in self.feature_info]

    def endpoint_info(self, layer: int) -> dict:
        """Channels and stride of a paper layer's output, known without a forward pass."""
        for info in self.feature_info:
            if info["layer"] == layer:
                return info
        raise KeyError(f"layer {layer} is not in this network; it has layers {self.layer_numbers}")

    def normalize(self, images: Tensor) -> Tensor:
        """Map images in [0, 1] to the input statistics these weights were trained with."""
        return (images - self.input_mean) / self.input_std

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the FC with a fresh one for ``num_classes`` (0 removes it)."""
        self.num_classes = num_classes
        self.config["num_classes"] = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map (layer 13), before pooling and FC."""
        return self.features(x)

    def forward_endpoints(self, x: Tensor, layers: Sequence[int]) -> dict[str, Tensor]:
        """Return the requested layers' maps, keyed ``layer<N>``; stops after the deepest one."""
        wanted = {self.endpoint_info(n)["name"] for n in layers}
        deepest = self.endpoint_info(max(layers, key=self.layer_numbers.index))["name"]
        out: dict[str, Tensor] = {}
        for name, layer in self.features.named_children():  # layers, or graphs of layers named after their last
            x = layer(x)
            if name in wanted:
                out[name] = x
            if name == deepest:
                break
        if len(out) < len(wanted):  # a graph of several layers (quantization-aware training) hides them
            raise KeyError(f"layers {sorted(wanted - set(out))} are inside graphs of this body, whose parts are "
                           f"{[name for name, _ in self.features.named_children()]}")
        return out

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool, dropout and FC; ``pre_logits`` returns the pooled vector."""
        pooled = self.global_pool(features)
        if pre_logits:
            return pooled
        return self.classifier(self.dropout(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy with every BN folded into the conv before it (torch.fx's fuser does the folding).

    Same outputs as ``model.eval()`` up to float rounding, with a third fewer layers to run.
    """
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval())


def check_resolution(resolution: int) -> int:
    """Inputs below 32 px vanish before layer 13 (total stride 32)."""
    if not isinstance(resolution, int) or resolution < 32:
        raise ValueError(f"resolution must be an integer >= 32 (the network's total stride), got {resolution!r}")
    return resolution

