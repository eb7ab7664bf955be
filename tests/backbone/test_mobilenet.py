"""MobileNetV1: Table 1's shapes, alpha and resolution, endpoints, output stride, variants, bad arguments."""

import pytest
import torch

from mobilenets.backbone import LAYERS, MobileNetV1, check_resolution

# Table 1 at 224 px: (layer, output channels, output side).
TABLE1_OUTPUTS = [
    (0, 32, 112), (1, 64, 112), (2, 128, 56), (3, 128, 56), (4, 256, 28), (5, 256, 28), (6, 512, 14),
    (7, 512, 14), (8, 512, 14), (9, 512, 14), (10, 512, 14), (11, 512, 14), (12, 1024, 7), (13, 1024, 7),
]


def test_table1_shapes_at_224():
    model = MobileNetV1().eval()
    x = torch.zeros(1, 3, 224, 224)
    maps = model.forward_endpoints(x, [n for n, _, _ in TABLE1_OUTPUTS])
    assert list(maps) == [f"layer{n}" for n, _, _ in TABLE1_OUTPUTS]
    for number, channels, side in TABLE1_OUTPUTS:
        assert maps[f"layer{number}"].shape == (1, channels, side, side), number
        info = model.endpoint_info(number)
        assert (info["num_chs"], info["reduction"]) == (channels, 224 // side)
    assert model(x).shape == (1, 1000)
    # 13 separable blocks: each a 3x3 depthwise and a 1x1 pointwise conv; the last depthwise has stride 1.
    convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 27
    assert model.features.layer13.dw.conv.stride == (1, 1)
    assert model.features.layer12.dw.conv.stride == (2, 2)
    assert all(m.groups == m.in_channels for m in convs[1::2])
    assert all(m.kernel_size == (1, 1) for m in convs[2::2])


@pytest.mark.parametrize(
    "alpha,resolution", [(0.25, 128), (0.5, 160), (0.75, 192), (1.0, 96), (1.3, 64), (0.1, 33)]
)
def test_endpoints_for_alpha_and_resolution(alpha, resolution):
    model = MobileNetV1(alpha=alpha, num_classes=7).eval()
    maps = model.forward_endpoints(torch.zeros(2, 3, resolution, resolution), [0, 6, 11, 13])
    for number, stride, channels in LAYERS:
        if number in (0, 6, 11, 13):
            expected_channels = max(int(channels * alpha), 8)
            reduction = model.endpoint_info(number)["reduction"]
            side = maps[f"layer{number}"].shape[-1]
            assert maps[f"layer{number}"].shape[:2] == (2, expected_channels)
            assert side == -(-resolution // reduction)  # 'same'-style ceil division
    assert model(torch.zeros(2, 3, resolution, resolution)).shape == (2, 7)


def test_width_rule_is_tf_slim():
    model = MobileNetV1(alpha=0.3)
    assert [info["num_chs"] for info in model.feature_info] == [
        max(int(c * 0.3), 8) for _, _, c in LAYERS
    ]  # 32*0.3 -> 9, 64*0.3 -> 19 ...
    assert MobileNetV1(alpha=0.1).feature_info[0]["num_chs"] == 8  # min_depth


def test_features_skip_pool_and_fc_and_no_classifier():
    model = MobileNetV1(alpha=0.25, num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    assert model.features(x).shape == (1, 256, 2, 2)
    assert torch.equal(model.forward_features(x), model.features(x))
    assert model(x).shape == (1, 256)  # pooled features when there is no classifier


def test_reset_classifier():
    model = MobileNetV1(alpha=0.25)
    model.reset_classifier(120)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 120)
    assert model.config["num_classes"] == 120
    model.reset_classifier(0)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 256)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_by_dilation(output_stride):
    model = MobileNetV1(alpha=0.25, output_stride=output_stride).eval()
    out = model.forward_features(torch.zeros(1, 3, 128, 128))
    assert out.shape[-1] == 128 // output_stride
    assert model.feature_info[-1]["reduction"] == output_stride
    dilations = [m.dilation[0] for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert max(dilations) == 32 // output_stride


def test_full_conv_variant_has_no_depthwise():
    model = MobileNetV1(alpha=0.25, separable=False)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 14 and all(m.groups == 1 and m.kernel_size == (3, 3) for m in convs)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_shallow_variant_drops_the_five_14x14_blocks():
    model = MobileNetV1(alpha=0.25, shallow=True)
    assert model.layer_numbers == [0, 1, 2, 3, 4, 5, 6, 12, 13]
    with pytest.raises(KeyError, match="layer 11 is not in this network"):
        model.endpoint_info(11)


def test_activation_choice():
    assert isinstance(MobileNetV1(alpha=0.25, activation="relu").features.layer0.act, torch.nn.ReLU)
    assert isinstance(MobileNetV1(alpha=0.25).features.layer0.act, torch.nn.ReLU6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(alpha=0), "alpha must be a positive number"),
        (dict(alpha=-0.5), "alpha must be a positive number"),
        (dict(output_stride=4), "output_stride must be 8, 16 or 32"),
        (dict(activation="gelu"), "activation must be 'relu' or 'relu6'"),
        (dict(num_classes=-1), "num_classes must be >= 0"),
        (dict(in_chans=1), "one value per input channel"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV1(**kwargs)


def test_resolution_check():
    assert check_resolution(32) == 32
    for bad in (31, 0, 224.0):
        with pytest.raises(ValueError, match="resolution must be an integer >= 32"):
            check_resolution(bad)


def test_normalize_uses_the_weights_statistics():
    model = MobileNetV1(alpha=0.25, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert torch.allclose(model.normalize(torch.ones(1, 3, 4, 4)), torch.ones(1, 3, 4, 4))
    assert "input_mean" in model.state_dict()


def test_fold_batchnorm_keeps_outputs():
    from mobilenets.backbone import fold_batchnorm

    model = MobileNetV1(alpha=0.25, num_classes=5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)
