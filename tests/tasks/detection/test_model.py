"""SSD-MobileNet as the TF detection API built it: maps, 1917 anchors, Table 13's size, torchvision's machinery."""

import math

import pytest
import torch
import torchvision
from torchvision.models.detection.image_list import ImageList

from mobilenets.backbone import MobileNetV1, profile_model
from mobilenets.tasks.detection.model import (
    IGNORE,
    AnchorConfig,
    SSDNetwork,
    TFAnchorGenerator,
    match_anchors,
    ssd_loss,
    ssd_mobilenet,
    table13,
)


def _anchors(ssd, size):
    features = list(ssd.backbone(torch.zeros(1, 3, size, size)).values())
    images = ImageList(torch.zeros(1, 3, size, size), [(size, size)])
    return features, ssd.anchor_generator(images, features)[0]


def test_feature_maps_and_1917_anchors_at_300():
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.25, num_classes=0), 91).eval()
    features, anchors = _anchors(ssd, 300)
    assert [tuple(f.shape[-2:]) for f in features] == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert [f.shape[1] for f in features] == [128, 256, 512, 256, 256, 128]  # layer 11, 13 at alpha 0.25, extras
    assert ssd.anchor_generator.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert anchors.shape == (1917, 4)


def test_tf_anchor_layout():
    generator = TFAnchorGenerator()
    lowest = generator._wh_pairs[0]
    assert torch.allclose(lowest, torch.tensor([[0.1, 0.1], [0.2 * math.sqrt(2), 0.2 / math.sqrt(2)],
                                                [0.2 / math.sqrt(2), 0.2 * math.sqrt(2)]]))
    second = generator._wh_pairs[1]
    assert second.shape == (6, 2) and torch.allclose(second[0], torch.tensor([0.35, 0.35]))
    assert torch.allclose(second[-1], torch.full((2,), math.sqrt(0.35 * 0.5)))  # the interpolated scale
    assert torch.allclose(generator._wh_pairs[5][-1], torch.full((2,), math.sqrt(0.95 * 1.0)))
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.25, num_classes=0), 5).eval()
    _, anchors = _anchors(ssd, 300)
    first = anchors[0]  # the first cell's first box: centre (0.5/19) * 300, side 0.1 * 300
    centre, side = 0.5 / 19 * 300, 30.0
    assert torch.allclose(first, torch.tensor([centre - side / 2, centre - side / 2, centre + side / 2,
                                               centre + side / 2]), atol=1e-4)


def test_table13_size():
    profile = profile_model(SSDNetwork(ssd_mobilenet(MobileNetV1(num_classes=0), 91)), 300)
    assert round(profile.macs / 1e9, 1) == 1.2 and round(profile.params / 1e6, 1) == 6.8
    assert table13().rows[0][-1] == "yes"


def test_ssdlite_is_smaller():
    ssd = SSDNetwork(ssd_mobilenet(MobileNetV1(num_classes=0), 91))
    lite = SSDNetwork(ssd_mobilenet(MobileNetV1(num_classes=0), 91, lite=True))
    assert profile_model(lite, 300).params < profile_model(ssd, 300).params
    convs = [m for m in lite.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.groups > 1 for m in convs) > 13 + 4  # depthwise in the body, the extras and the heads


@pytest.mark.parametrize("lite", [False, True])
def test_uses_torchvision_ssd_loss_and_postprocess(lite):
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.25, num_classes=0), 4, size=128, lite=lite, extra_depths=(64, 32, 32, 16))
    assert ssd.box_coder.weights == (10.0, 10.0, 5.0, 5.0) and ssd.neg_to_pos_ratio == 3.0
    images = [torch.rand(3, 100, 140), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # an empty image
    losses = ssd.train()(images, targets)
    assert set(losses) == {"bbox_regression", "classification"} and all(torch.isfinite(v) for v in losses.values())
    detections = ssd.eval()(images)
    assert len(detections) == 2 and detections[0]["boxes"].shape[1] == 4
    if len(detections[0]["boxes"]):  # mapped back to the original 140x100 image
        assert detections[0]["boxes"][:, 2].max() <= 140 + 1e-3 and detections[0]["boxes"][:, 3].max() <= 100 + 1e-3


def test_any_size_and_classes():
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.5, num_classes=0), 11, size=224).eval()
    out = ssd.head(list(ssd.backbone(torch.zeros(1, 3, 224, 224)).values()))
    assert out["cls_logits"].shape[-1] == 11 and out["cls_logits"].shape[1] == out["bbox_regression"].shape[1]


@pytest.mark.parametrize("anchors, per_location", [
    (AnchorConfig(), [3, 6, 6, 6, 6, 6]),  # TF's defaults: 1917 at 300 px
    (AnchorConfig(reduce_boxes_in_lowest_layer=False), [6, 6, 6, 6, 6, 6]),
    (AnchorConfig(aspect_ratios=(1.0, 2.0, 0.5)), [3, 4, 4, 4, 4, 4]),
    (AnchorConfig(aspect_ratios=(1.0, 2.0, 0.5), interpolated_scale_aspect_ratio=0.0), [3, 3, 3, 3, 3, 3]),
])
def test_anchors_from_the_config_change_the_count_as_computed(anchors, per_location):
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.25, num_classes=0), 5, anchors=anchors).eval()
    _, boxes = _anchors(ssd, 300)
    cells = [19 * 19, 10 * 10, 5 * 5, 3 * 3, 2 * 2, 1]
    assert ssd.anchor_generator.num_anchors_per_location() == per_location
    assert len(boxes) == sum(c * a for c, a in zip(cells, per_location))
    heads = ssd.head.classification_head.module_list
    assert [h.out_channels // 5 for h in heads] == per_location  # the predictors follow the anchors
    profile = profile_model(SSDNetwork(ssd), 300)  # and so does the profile
    assert profile.params == sum(p.numel() for p in SSDNetwork(ssd).parameters())


def test_anchor_scales_from_the_config():
    generator = TFAnchorGenerator(6, AnchorConfig(min_scale=0.1, max_scale=0.9, reduce_boxes_in_lowest_layer=False))
    assert torch.allclose(generator._wh_pairs[0][0], torch.tensor([0.1, 0.1]))
    assert torch.allclose(generator._wh_pairs[5][0], torch.tensor([0.9, 0.9]))
    assert torch.allclose(generator._wh_pairs[2][0], torch.tensor([0.42, 0.42]))  # 0.1 + 0.8 * 2 / 5


def test_bad_anchor_config():
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        AnchorConfig(min_scale=0.9, max_scale=0.2)
    with pytest.raises(ValueError, match="aspect_ratios must be positive"):
        AnchorConfig(aspect_ratios=(1.0, 0.0))


def _loss_inputs(crowd: bool):
    torch.manual_seed(0)
    ssd = ssd_mobilenet(MobileNetV1(alpha=0.25, num_classes=0), 5, size=160, extra_depths=(32, 32, 32, 16))
    images = ImageList(torch.zeros(2, 3, 160, 160), [(160, 160)] * 2)
    features = list(ssd.backbone(images.tensors).values())
    anchors = ssd.anchor_generator(images, features)
    head = {"cls_logits": torch.randn(2, len(anchors[0]), 5), "bbox_regression": torch.randn(2, len(anchors[0]), 4)}
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0], [80.0, 20.0, 150.0, 90.0]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[30.0, 40.0, 120.0, 150.0]]), "labels": torch.tensor([2])}]
    if crowd:
        targets[1]["crowd_boxes"] = torch.tensor([[0.0, 0.0, 60.0, 60.0]])
    return ssd, targets, head, anchors


def test_ssd_loss_equals_torchvisions_without_crowds():
    ssd, targets, head, anchors = _loss_inputs(crowd=False)
    matched = match_anchors(ssd, targets, anchors)
    reference_matched = [ssd.proposal_matcher(torchvision.ops.box_iou(t["boxes"], a)) for t, a in zip(targets, anchors)]
    assert all(torch.equal(m, r) for m, r in zip(matched, reference_matched))
    ours, reference = ssd_loss(ssd, targets, head, anchors, matched), ssd.compute_loss(targets, head, anchors, matched)
    for key in ("bbox_regression", "classification"):
        assert torch.allclose(ours[key], reference[key], rtol=1e-6), key


def test_anchors_on_a_crowd_region_are_neither_objects_nor_background():
    ssd, targets, head, anchors = _loss_inputs(crowd=True)
    matched = match_anchors(ssd, targets, anchors)
    plain = match_anchors(ssd, [{k: v for k, v in t.items() if k != "crowd_boxes"} for t in targets], anchors)
    ignored = matched[1] == IGNORE
    crowd = targets[1]["crowd_boxes"][0]
    inside = ((anchors[1][:, 2:].clamp(max=crowd[2:]) - anchors[1][:, :2].clamp(min=crowd[:2])).clamp(min=0).prod(1)
              / torchvision.ops.box_area(anchors[1]))
    assert torch.equal(ignored, (plain[1] < 0) & (inside >= 0.5)) and ignored.sum() > 10
    assert torch.equal(matched[0], plain[0]) and torch.equal(matched[1][~ignored], plain[1][~ignored])
    # an ignored anchor's score does not change the loss, however wrong it is; a background anchor's does
    base = ssd_loss(ssd, targets, head, anchors, matched)["classification"]
    pushed = {**head, "cls_logits": head["cls_logits"].clone()}
    pushed["cls_logits"][1, ignored, 1] = 50.0
    assert torch.equal(ssd_loss(ssd, targets, pushed, anchors, matched)["classification"], base)
    assert ssd_loss(ssd, targets, pushed, anchors, plain)["classification"] > base
