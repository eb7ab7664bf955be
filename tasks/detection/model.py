"""SSD300 / SSDLite on MobileNet, as the TF object detection API built SSD-MobileNet (paper Table 13).

torchvision's ``SSD`` supplies the meta-architecture: resize/normalise transform, SSD matching (IoU 0.5),
box coding with variances (10, 10, 5, 5), 3:1 hard-negative mining, the loss and batched NMS. Ours are the
parts it lacks: the MobileNet feature extractor (layers 11 and 13 plus four extra layers), the TF anchor
layout (3 boxes on the lowest map, 6 elsewhere: 1917 anchors at 300 px) and the 1x1 box predictor.
SSDLite swaps in depthwise-separable extra layers and torchvision's ``SSDLiteHead``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDScoringHead
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import box_area, box_iou

from mobilenets.backbone import MobileNetV1
from mobilenets.backbone.mobilenet import ConvBNAct, DepthwiseSeparable
from mobilenets.backbone.profile import PaperRow, model_rows_table, register_table
from mobilenets.core.checkpoint import checkpoint_type
from mobilenets.core.tables import Table

__all__ = ["IGNORE", "AnchorConfig", "MobileNetSSDFeatures", "SSD1x1Head", "TABLE13_ROWS", "TFAnchorGenerator",
           "match_anchors", "ssd_loss", "ssd_mobilenet", "table13"]

FEATURE_LAYERS = (11, 13)
EXTRA_DEPTHS = (512, 256, 256, 128)


@checkpoint_type
@dataclass(frozen=True)
class AnchorConfig:
    """The ``anchors:`` block: the TF object detection API's ``ssd_anchor_generator`` fields, TF's defaults.

    Args:
        min_scale: the box scale (a fraction of the image side) of the lowest map; the maps between the lowest
            and the highest get linearly spaced scales.
        max_scale: the box scale of the highest map.
        aspect_ratios: width / height of the boxes at every location (all maps but a reduced lowest one).
        interpolated_scale_aspect_ratio: the aspect ratio of one more box per location at the scale between this
            map's and the next's (sqrt(s_k s_k+1)); 0 adds none.
        reduce_boxes_in_lowest_layer: the lowest map gets only 3 boxes, (0.1, 1), (min_scale, 2), (min_scale, 1/2).
    """

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"anchors: need 0 < min_scale <= max_scale, got {self.min_scale} and {self.max_scale}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"anchors: aspect_ratios must be positive, got {list(self.aspect_ratios)}")
        if self.interpolated_scale_aspect_ratio < 0:
            raise ValueError("anchors: interpolated_scale_aspect_ratio must be >= 0 (0: no interpolated box), got "
                             f"{self.interpolated_scale_aspect_ratio}")


class TFAnchorGenerator(DefaultBoxGenerator):
    """The TF object detection API's SSD anchors (``create_ssd_anchors``), on torchvision's box grid.

    Hand-written because torchvision's generator always puts the same box set on every map: TF puts 3 boxes on
    the lowest map ((0.1, 1), (s0, 2), (s0, 1/2)) and on the others one box per aspect ratio at scale s_k
    plus one at sqrt(s_k * s_k+1) (with ``interpolated_scale_aspect_ratio``). Scales run linearly from
    ``min_scale`` to ``max_scale``.
    """

    def __init__(self, num_layers: int = 6, config: AnchorConfig = AnchorConfig()) -> None:
        low, high = config.min_scale, config.max_scale
        scales = [low + (high - low) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
        super().__init__(aspect_ratios=[[2]] * num_layers, scales=scales, clip=False)
        specs: list[list[tuple[float, float]]] = []
        for layer in range(num_layers):
            scale, next_scale = scales[layer], scales[layer + 1]
            if layer == 0 and config.reduce_boxes_in_lowest_layer:
                specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
                continue
            specs.append([(scale, ratio) for ratio in config.aspect_ratios])
            if config.interpolated_scale_aspect_ratio > 0:
                specs[-1].append((math.sqrt(scale * next_scale), config.interpolated_scale_aspect_ratio))
        self.box_specs = specs
        self._wh_pairs = [
            torch.tensor([[s * math.sqrt(r), s / math.sqrt(r)] for s, r in layer_specs], dtype=torch.float32)
            for layer_specs in specs
        ]

    def num_anchors_per_location(self) -> list[int]:
        return [len(layer_specs) for layer_specs in self.box_specs]


class MobileNetSSDFeatures(nn.Module):
    """MobileNet layers 11 and 13, then extra layers (1x1 conv to half depth, 3x3 stride-2 conv to depth)."""

    def __init__(self, body: MobileNetV1, extra_depths: Sequence[int] = EXTRA_DEPTHS, lite: bool = False) -> None:
        super().__init__()
        body.reset_classifier(0)
        self.body = body
        in_chs = body.endpoint_info(FEATURE_LAYERS[-1])["num_chs"]
        self.extras = nn.ModuleList()
        for depth in extra_depths:
            reduce = ConvBNAct(in_chs, depth // 2, kernel_size=1)
            if lite:  # SSDLite: the stride-2 3x3 becomes depthwise separable
                expand = DepthwiseSeparable(depth // 2, depth, stride=2)
            else:
                expand = ConvBNAct(depth // 2, depth, kernel_size=3, stride=2)
            self.extras.append(nn.Sequential(reduce, expand))
            in_chs = depth
        self.out_channels = [body.endpoint_info(n)["num_chs"] for n in FEATURE_LAYERS] + list(extra_depths)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        maps = list(self.body.forward_endpoints(images, FEATURE_LAYERS).values())
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return OrderedDict((str(i), feature) for i, feature in enumerate(maps))


def _predictors(in_channels: Sequence[int], num_anchors: Sequence[int], columns: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Conv2d(c, a * columns, kernel_size=1) for c, a in zip(in_channels, num_anchors))


class SSD1x1Head(nn.Module):
    """The TF SSD-MobileNet box predictor: a 1x1 conv per map for class scores and one for box offsets.

    Hand-written because torchvision's ``SSDHead`` uses 3x3 predictors; its ``SSDScoringHead`` does the rest.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.classification_head = SSDScoringHead(_predictors(in_channels, num_anchors, num_classes), num_classes)
        self.regression_head = SSDScoringHead(_predictors(in_channels, num_anchors, 4), 4)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(features), "cls_logits": self.classification_head(features)}


def ssd_mobilenet(
    body: MobileNetV1,
    num_classes: int,
    size: int = 300,
    lite: bool = False,
    extra_depths: Sequence[int] = EXTRA_DEPTHS,
    anchors: AnchorConfig = AnchorConfig(),
    score_thresh: float = 0.01,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
) -> SSD:
    """SSD (or SSDLite) on a MobileNet body; ``num_classes`` counts the background (COCO: 91).

    The input normalisation is the body's own (it travels with its weights).
    """
    features = MobileNetSSDFeatures(body, extra_depths, lite)
    anchor_generator = TFAnchorGenerator(len(features.out_channels), anchors)
    per_location = anchor_generator.num_anchors_per_location()
    if lite:
        head: nn.Module = SSDLiteHead(features.out_channels, per_location, num_classes,
                                      norm_layer=lambda channels: nn.BatchNorm2d(channels))
    else:
        head = SSD1x1Head(features.out_channels, per_location, num_classes)
    return SSD(
        features, anchor_generator, (size, size), num_classes,
        image_mean=body.input_mean.flatten().tolist(), image_std=body.input_std.flatten().tolist(),
        head=head, score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
        topk_candidates=100,  # TF SSD-MobileNet's max_detections_per_class
    )


#: the matched index of an anchor on a crowd region: neither an object nor background (the ``Matcher``'s own
#: "between thresholds" value, which the SSD matcher otherwise never produces)
IGNORE = Matcher.BETWEEN_THRESHOLDS
#: an unmatched anchor that covers a crowd region by at least this share of its area is ignored
CROWD_COVER = 0.5


def match_anchors(ssd: SSD, targets: list[dict[str, Tensor]], anchors: list[Tensor]) -> list[Tensor]:
    """SSD's matching (IoU >= 0.5 plus each object's best anchor) per image; anchors left unmatched that lie on a
    crowd region (``target["crowd_boxes"]``) become ``IGNORE``, as the TF API and Detectron treat crowds."""
    matched = []
    for target, anchors_per_image in zip(targets, anchors):
        if target["boxes"].numel():
            indices = ssd.proposal_matcher(box_iou(target["boxes"], anchors_per_image))
        else:
            indices = torch.full((len(anchors_per_image),), -1, dtype=torch.int64, device=anchors_per_image.device)
        crowd = target.get("crowd_boxes")
        if crowd is not None and crowd.numel():
            top_left = torch.max(anchors_per_image[:, None, :2], crowd[None, :, :2])
            bottom_right = torch.min(anchors_per_image[:, None, 2:], crowd[None, :, 2:])
            inside = (bottom_right - top_left).clamp(min=0).prod(-1) / box_area(anchors_per_image)[:, None]
            indices[(indices < 0) & (inside.max(1).values >= CROWD_COVER)] = IGNORE
        matched.append(indices)
    return matched


def ssd_loss(ssd: SSD, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
             matched_idxs: list[Tensor]) -> dict[str, Tensor]:
    """torchvision's SSD loss: smooth L1 on the matched anchors' encoded boxes, cross-entropy on them and on 3x as
    many hardest background anchors, both over the number of matches. Anchors matched ``IGNORE`` are neither.

    Hand-written because ``SSD.compute_loss`` has no ignore label: every unmatched anchor is a background candidate.
    """
    box_losses, class_targets = [], []
    for target, regression, anchors_per_image, matched in zip(targets, head_outputs["bbox_regression"], anchors,
                                                               matched_idxs):
        foreground = torch.where(matched >= 0)[0]
        encoded = ssd.box_coder.encode_single(target["boxes"][matched[foreground]], anchors_per_image[foreground])
        box_losses.append(F.smooth_l1_loss(regression[foreground], encoded, reduction="sum"))
        labels = torch.zeros_like(matched)
        labels[foreground] = target["labels"][matched[foreground]]
        class_targets.append(labels)
    matched, labels = torch.stack(matched_idxs), torch.stack(class_targets)
    cls_logits = head_outputs["cls_logits"]
    cls_loss = F.cross_entropy(cls_logits.reshape(-1, cls_logits.size(-1)), labels.reshape(-1),
                               reduction="none").view(labels.shape)
    foreground, candidates = matched >= 0, matched == Matcher.BELOW_LOW_THRESHOLD
    rank = cls_loss.masked_fill(~candidates, -float("inf")).sort(1, descending=True)[1].sort(1)[1]
    background = (rank < ssd.neg_to_pos_ratio * foreground.sum(1, keepdim=True)) & candidates
    matches = max(1, int(foreground.sum()))
    return {"bbox_regression": torch.stack(box_losses).sum() / matches,
            "classification": (cls_loss[foreground].sum() + cls_loss[background].sum()) / matches}


class SSDNetwork(nn.Module):
    """Backbone, extras and head of an SSD as one tensor-in module, for counting MACs and parameters."""

    def __init__(self, ssd: SSD) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.head(list(self.backbone(images).values()))


class _SSDRow(PaperRow):
    def build(self) -> nn.Module:
        options = dict(self.model)
        alpha, lite = options.pop("alpha"), options.pop("lite")
        return SSDNetwork(ssd_mobilenet(MobileNetV1(alpha=alpha, num_classes=0), size=self.resolution, lite=lite,
                                        **options))


# The paper prints 1.2B MACs: "1.2e3" million keeps its precision (hundreds of millions).
TABLE13_ROWS = [_SSDRow("SSD 300 MobileNet", "13", dict(alpha=1.0, lite=False, num_classes=91), 300, "1.2e3", "6.8")]


@register_table("table13")
def table13() -> Table:
    """Table 13: SSD300 on MobileNet with COCO's 90 classes + background."""
    return model_rows_table("table13", "Table 13: COCO detection (90 classes + background, 300 px)", TABLE13_ROWS)
