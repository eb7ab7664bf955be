"""The profiler against the paper's printed numbers and against torch's own FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mobilenets.backbone import MobileNetV1, profile_model
from mobilenets.backbone.profile import IMAGENET_ROWS, agrees, compare_rows, imagenet_table, table2, table3

# The paper's Tables 4-9: (row name, MACs in millions, params in millions) exactly as printed.
PAPER_IMAGENET = {
    "Conv MobileNet (full 3x3 convs)": ("4866", "29.3"),
    "1.0 MobileNet-224": ("569", "4.2"),
    "0.75 MobileNet-224": ("325", "2.6"),
    "Shallow MobileNet": ("307", "2.9"),
    "0.5 MobileNet-224": ("149", "1.3"),
    "0.25 MobileNet-224": ("41", "0.5"),
    "1.0 MobileNet-192": ("418", "4.2"),
    "1.0 MobileNet-160": ("290", "4.2"),
    "1.0 MobileNet-128": ("186", "4.2"),
    "0.50 MobileNet-160": ("76", "1.32"),
}
KNOWN_DISCREPANCIES = {"Conv MobileNet (full 3x3 convs)", "1.0 MobileNet-160", "0.50 MobileNet-160"}


def test_exact_counts_of_the_reference_model():
    profile = profile_model(MobileNetV1(), 224)
    assert profile.macs == 568_740_352
    assert profile.params == 4_231_976  # conv + BN affine + FC weight and bias, as timm's mobilenetv1_100
    assert len(profile.layers) == 28  # the paper's "28 layers": 27 convs + FC


def test_imagenet_rows_match_paper():
    assert {row.name: (row.paper_macs, row.paper_params) for row in IMAGENET_ROWS} == PAPER_IMAGENET
    for result in compare_rows(IMAGENET_ROWS):
        name = result["row"].name
        if name in KNOWN_DISCREPANCIES:
            assert not result["agrees"] and result["row"].note, name
        else:
            assert result["agrees"], (name, result["macs"], result["params"])


def test_known_discrepancies_are_what_the_notes_say():
    full = profile_model(MobileNetV1(separable=False), 224)
    fc_macs = sum(layer.macs for layer in full.layers if layer.kind == "fully connected")
    assert agrees((full.macs - fc_macs) / 1e6, "4866")
    at_160 = profile_model(MobileNetV1(), 160).macs / 1e6
    assert agrees(at_160, "291") and int(at_160) == 290  # TF-slim rounds, the paper truncates
    half_model = MobileNetV1(alpha=0.5)
    half = profile_model(half_model, 160)
    bn_params = sum(p.numel() for m in half_model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert int(half.macs / 1e6) == 76 and agrees((half.params - bn_params) / 1e6, "1.32")


def test_table2_and_its_typo():
    rows = {row[0]: row for row in table2().rows}
    assert rows["conv 1x1"][1:5] == ["94.86%", "94.86%", "74.59%", "74.59%"]
    assert rows["conv dw 3x3"][1:5] == ["3.06%", "3.06%", "1.06%", "1.06%"]
    assert rows["fully connected"][1:5] == ["0.18%", "0.18%", "24.33%", "24.33%"]
    assert rows["conv 3x3 (stem)"][1:3] == ["1.91%", "1.19%"]
    assert rows["conv 3x3 (stem)"][-1] == "no: paper typo"


def test_table3_rows_agree():
    table = table3()
    assert [row[-1] for row in table.rows] == ["yes"] * 4
    assert [row[2] for row in table.rows] == ["462.42", "52.28", "29.58", "15.09"]


def test_imagenet_table_marks():
    marks = [row[-1] for row in imagenet_table().rows]
    assert marks.count("yes") == 7 and marks.count("no, see [1]") == 1 and "NO" not in marks


def test_agrees_uses_printed_precision():
    assert agrees(568.74, "569") and agrees(1.3316, "1.33") and agrees(0.25, "0.3")
    assert not agrees(290.68, "290") and not agrees(1.3316, "1.32")


@pytest.mark.parametrize(
    "kwargs,resolution", [({}, 224), (dict(alpha=0.5), 160), (dict(separable=False, alpha=0.25), 96),
                          (dict(shallow=True, output_stride=16), 128)]
)
def test_macs_agree_with_torch_flop_counter(kwargs, resolution):
    model = MobileNetV1(**kwargs).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    assert profile_model(model, resolution).macs == counter.get_total_flops() // 2


def test_per_layer_table_rows():
    profile = profile_model(MobileNetV1(alpha=0.75, num_classes=10), 192)
    assert profile.layers[0].name == "features.layer0.conv" and profile.layers[0].input_shape == (3, 192, 192)
    assert profile.layers[-1].kind == "fully connected" and profile.layers[-1].macs == 768 * 10
    assert set(profile.by_kind()) == {"conv 3x3", "conv dw 3x3", "conv 1x1", "fully connected"}


def test_paper_imagenet_accuracy_rows_match_the_size_rows():
    """The sweep's accuracy table carries the same printed MACs and params as the paper's model rows."""
    from mobilenets.backbone.profile import PAPER_IMAGENET

    printed = {(row.model.get("alpha", 1.0), row.resolution): (float(row.paper_macs), float(row.paper_params))
               for row in IMAGENET_ROWS if set(row.model) <= {"alpha"}}
    assert {key: (macs, params) for key, (_, macs, params) in PAPER_IMAGENET.items()} == \
        {key: printed[key] for key in PAPER_IMAGENET}
