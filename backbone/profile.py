"""Multiply-adds and parameters counted the paper's way, and the paper's size tables side by side.

The paper counts MACs of conv and FC layers only (no BN, ReLU, pooling or bias) and reports parameters as
all learnable weights. ``profile_model`` counts any ``nn.Module`` that way with forward hooks;
torch's own FlopCounterMode counts every aten op (and 2 FLOPs per MAC), so it cannot give the per-layer,
per-type breakdown of Table 2, which is why this counter is hand-written (tests cross-check the two).

Each paper table is a ``Table``; task packages register their Section 4 tables with
``register_table`` and ``mobilenets profile`` prints every registered table.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mobilenets.backbone.mobilenet import MobileNetV1, check_resolution
from mobilenets.core.tables import Table

__all__ = [
    "PAPER_IMAGENET",
    "LayerCost",
    "ModelProfile",
    "PaperRow",
    "agrees",
    "compare_rows",
    "imagenet_table",
    "layer_table",
    "model_rows_table",
    "profile_model",
    "register_table",
    "registered_tables",
    "table2",
    "table3",
]


@dataclass
class LayerCost:
    """One conv or FC layer: its paper type, input shape, MACs and weight count (bias excluded)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    weights: int


@dataclass
class ModelProfile:
    """Per-layer costs of one forward pass at batch 1, and the model's learnable parameter count."""

    layers: list[LayerCost]
    params: int

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """MACs and weights summed per layer type (Table 2)."""
        totals: dict[str, tuple[int, int]] = {}
        for layer in self.layers:
            macs, weights = totals.get(layer.kind, (0, 0))
            totals[layer.kind] = (macs + layer.macs, weights + layer.weights)
        return totals


def layer_kind(module: nn.Module) -> str:
    """The paper's layer type names: 'conv 1x1', 'conv dw 3x3', 'conv 3x3', 'fully connected'."""
    if isinstance(module, nn.Linear):
        return "fully connected"
    kh, kw = module.kernel_size
    depthwise = module.groups > 1 and module.groups == module.in_channels
    return f"conv {'dw ' if depthwise else ''}{kh}x{kw}"


@torch.no_grad()
def profile_model(model: nn.Module, input_size: int | Sequence[int]) -> ModelProfile:
    """Count MACs (conv + FC, one per multiply-accumulate) and parameters for one input of ``input_size``.

    Args:
        model: any module; only its ``nn.Conv2d`` and ``nn.Linear`` layers cost MACs.
        input_size: side of a square 3-channel input, or a full (C, H, W) shape.
    """
    shape = (3, input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    layers: list[LayerCost] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_output = module.in_channels // module.groups * kh * kw
        else:
            per_output = module.in_features
        layers.append(
            LayerCost(
                name=names[module],
                kind=layer_kind(module),
                input_shape=tuple(inputs[0].shape[1:]),
                output_shape=tuple(output.shape[1:]),
                macs=output[0].numel() * per_output,
                weights=module.weight.numel(),
            )
        )

    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelProfile(layers=layers, params=params)


def agrees(computed: float, printed: str) -> bool:
    """True when ``computed`` rounds (half up) to the paper's printed value at the paper's precision."""
    places = Decimal(printed).as_tuple().exponent
    return Decimal(repr(computed)).quantize(Decimal(1).scaleb(places), rounding=ROUND_HALF_UP) == Decimal(printed)


_REGISTRY: dict[str, Callable[[], Table]] = {}


def register_table(key: str) -> Callable[[Callable[[], Table]], Callable[[], Table]]:
    """Add a table builder to ``mobilenets profile`` (tasks register their Section 4 tables)."""

    def decorator(builder: Callable[[], Table]) -> Callable[[], Table]:
        _REGISTRY[key] = builder
        return builder

    return decorator


def registered_tables() -> dict[str, Callable[[], Table]]:
    """The table builders in registration order (backbone tables first)."""
    return dict(_REGISTRY)


def _mark(ok: bool, note: str | None = None) -> str:
    if ok:
        return "yes"
    return f"no: {note}" if note else "NO"


@register_table("table2")
def table2() -> Table:
    """Table 2: share of MACs and weights per layer type in 1.0 MobileNet-224."""
    paper = {  # type: (MACs %, params %)
        "conv 1x1": ("94.86", "74.59"),
        "conv dw 3x3": ("3.06", "1.06"),
        "conv 3x3": ("1.19", "0.02"),
        "fully connected": ("0.18", "24.33"),
    }
    profile = profile_model(MobileNetV1(alpha=1.0), 224)
    totals = profile.by_kind()
    all_macs = sum(m for m, _ in totals.values())
    all_weights = sum(w for _, w in totals.values())
    rows, notes = [], []
    for kind, (paper_macs, paper_params) in paper.items():
        macs = 100 * totals[kind][0] / all_macs
        weights = 100 * totals[kind][1] / all_weights
        ok = agrees(macs, paper_macs) and agrees(weights, paper_params)
        typo = kind == "conv 3x3" and not agrees(macs, paper_macs)
        if typo:
            notes.append(
                f"Paper typo: the stem's MAC share is printed {paper_macs}% but the printed column only sums to "
                f"100% with {macs:.2f}%, the computed value (digits transposed)."
            )
        label = kind + (" (stem)" if kind == "conv 3x3" else "")
        rows.append([label, f"{macs:.2f}%", f"{paper_macs}%", f"{weights:.2f}%", f"{paper_params}%",
                     _mark(ok, "paper typo" if typo else None)])
    notes.append("Params here are conv/FC weights only (no BN, no bias), which is how the paper's column sums to 100%.")
    return Table(
        key="table2",
        title="Table 2: resources per layer type, 1.0 MobileNet-224",
        columns=["type", "MACs", "paper", "params", "paper", "agrees"],
        rows=rows,
        notes=notes,
    )


def _separable_layer(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
    )


@register_table("table3")
def table3() -> Table:
    """Table 3: one 3x3 layer with M = N = 512 on a 14x14 map, and the effect of alpha and rho."""
    cases = [  # name, module, its input channels, spatial size, paper MACs (M), paper params (M)
        ("Conv 3x3, 512 -> 512", nn.Conv2d(512, 512, 3, padding=1, bias=False), 512, 14, "462", "2.36"),
        ("Depthwise separable", _separable_layer(512), 512, 14, "52.3", "0.27"),
        ("alpha = 0.75", _separable_layer(384), 384, 14, "29.6", "0.15"),
        ("rho = 0.714", _separable_layer(384), 384, 10, "15.1", "0.15"),
    ]
    rows = []
    for name, module, channels, size, paper_macs, paper_params in cases:
        profile = profile_model(module, (channels, size, size))
        macs, params = profile.macs / 1e6, profile.params / 1e6
        ok = agrees(macs, paper_macs) and agrees(params, paper_params)
        rows.append([name, f"{size}x{size}", f"{macs:.2f}", paper_macs, f"{params:.3f}", paper_params, _mark(ok)])
    return Table(
        key="table3",
        title="Table 3: one layer, Dk=3, M=N=512, Df=14 (MACs and params in millions)",
        columns=["layer", "map", "MACs", "paper", "params", "paper", "agrees"],
        rows=rows,
    )


@dataclass
class PaperRow:
    """One model row of the paper: how to build it and the MACs / params (millions) it prints.

    ``note`` explains a row whose printed value is not what the architecture gives (the tests check
    each note's claim); such a row is shown as disagreeing, with the note.
    """

    name: str
    table: str
    model: dict[str, Any]
    resolution: int
    paper_macs: str
    paper_params: str
    note: str | None = None

    def build(self) -> nn.Module:
        return MobileNetV1(**self.model)


def compare_rows(rows: Sequence[PaperRow]) -> list[dict[str, Any]]:
    """Profile each row's model; report computed values, the paper's, and whether they agree."""
    results = []
    for row in rows:
        profile = profile_model(row.build(), row.resolution)
        macs, params = profile.macs / 1e6, profile.params / 1e6
        ok = agrees(macs, row.paper_macs) and agrees(params, row.paper_params)
        results.append(dict(row=row, macs=macs, params=params, agrees=ok))
    return results


IMAGENET_ROWS: list[PaperRow] = [
    PaperRow("Conv MobileNet (full 3x3 convs)", "4", dict(separable=False), 224, "4866", "29.3",
             "the paper's 4866 leaves out the FC's 1.02M MACs (4867.3 - 1.0 = 4866.3)"),
    PaperRow("1.0 MobileNet-224", "4,6,7,8", dict(alpha=1.0), 224, "569", "4.2"),
    PaperRow("0.75 MobileNet-224", "5,6", dict(alpha=0.75), 224, "325", "2.6"),
    PaperRow("Shallow MobileNet", "5", dict(shallow=True), 224, "307", "2.9"),
    PaperRow("0.5 MobileNet-224", "6", dict(alpha=0.5), 224, "149", "1.3"),
    PaperRow("0.25 MobileNet-224", "6", dict(alpha=0.25), 224, "41", "0.5"),
    PaperRow("1.0 MobileNet-192", "7", dict(alpha=1.0), 192, "418", "4.2"),
    PaperRow("1.0 MobileNet-160", "7", dict(alpha=1.0), 160, "290", "4.2",
             "the paper truncates 290.7; the TF-slim release table prints 291"),
    PaperRow("1.0 MobileNet-128", "7", dict(alpha=1.0), 128, "186", "4.2"),
    PaperRow("0.50 MobileNet-160", "9", dict(alpha=0.5), 160, "76", "1.32",
             "the paper truncates 76.5M MACs, and its 1.32M params leave out BN (1.332M - 0.011M = 1.321M)"),
]


#: The paper's ImageNet accuracy of the width/resolution sweep (Tables 6 and 7, and Table 9's 0.50-160):
#: (alpha, resolution) -> (top-1 %, MACs M, params M). The demo's report and the deployment plots use it.
PAPER_IMAGENET = {(1.0, 224): (70.6, 569, 4.2), (0.75, 224): (68.4, 325, 2.6), (0.5, 224): (63.7, 149, 1.3),
                  (0.25, 224): (50.6, 41, 0.5), (1.0, 192): (69.1, 418, 4.2), (1.0, 160): (67.2, 290, 4.2),
                  (1.0, 128): (64.4, 186, 4.2), (0.5, 160): (60.2, 76, 1.32)}


def model_rows_table(key: str, title: str, rows: Sequence[PaperRow]) -> Table:
    """Profile each paper row and lay the result out beside the paper's values, notes for disagreements."""
    table_rows, notes = [], []
    for result in compare_rows(rows):
        row: PaperRow = result["row"]
        if result["agrees"]:
            mark = "yes"
        elif row.note:
            notes.append(f"[{len(notes) + 1}] {row.name}: {row.note}.")
            mark = f"no, see [{len(notes)}]"
        else:
            mark = "NO"
        table_rows.append([row.name, row.table, f"{result['macs']:.1f}", row.paper_macs,
                           f"{result['params']:.3f}", row.paper_params, mark])
    return Table(
        key=key,
        title=title,
        columns=["model", "paper table", "MACs (M)", "paper", "params (M)", "paper", "agrees"],
        rows=table_rows,
        notes=notes,
    )


@register_table("imagenet")
def imagenet_table() -> Table:
    """Tables 4-9: the ImageNet models' MACs and parameters."""
    return model_rows_table("imagenet", "Tables 4-9: ImageNet models (1000 classes)", IMAGENET_ROWS)


def layer_table(model: MobileNetV1, resolution: int) -> Table:
    """Table 1 for any single model: each conv/FC layer with its input, MACs and weights."""
    check_resolution(resolution)
    profile = profile_model(model, resolution)
    rows = [
        [layer.name, layer.kind, "x".join(map(str, layer.input_shape)), f"{layer.macs / 1e6:.3f}", layer.weights]
        for layer in profile.layers
    ]
    rows.append(["total", "", "", f"{profile.macs / 1e6:.3f}", f"{profile.params} params (incl. BN)"])
    config = ", ".join(f"{k}={v}" for k, v in model.config.items())
    return Table(
        key="model",
        title=f"MobileNetV1({config}) at {resolution}x{resolution}",
        columns=["layer", "type", "input", "MACs (M)", "weights"],
        rows=rows,
    )
