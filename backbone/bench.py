"""Inference speed of our 1.0-224 backbone against timm's ``mobilenetv1_100``, measured in one process.

Both models run the same inputs under the same thread count, interleaved round by round so that machine
noise hits both alike; the median over rounds is reported with the ratio timm time / our time (> 1: ours
is faster). A benchmark, never a test: timings are not asserted anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from mobilenets.backbone.mobilenet import MobileNetV1, fold_batchnorm
from mobilenets.core.tables import Table
from mobilenets.core.timing import interleaved_medians

__all__ = ["BenchRow", "bench_backbone", "bench_table"]


@dataclass
class BenchRow:
    batch_size: int
    memory_format: str
    variant: str
    ours_ms: float
    timm_ms: float

    @property
    def ratio(self) -> float:
        return self.timm_ms / self.ours_ms


def bench_backbone(
    batch_sizes: tuple[int, ...] = (1, 32), rounds: int = 20, warmup: int = 3, threads: int = 2, resolution: int = 224
) -> list[BenchRow]:
    """Median ms per batch for ours (eager and BN-folded) and timm, NCHW and channels_last."""
    try:
        import timm
    except ImportError:
        raise SystemExit("the backbone benchmark compares against timm: pip install 'mobilenet-suite[dev]'") from None
    torch.set_num_threads(threads)
    ours = MobileNetV1(alpha=1.0).eval()
    models = {
        "eager": ours,
        "BN folded": fold_batchnorm(ours),
        "timm": timm.create_model("mobilenetv1_100", pretrained=False).eval(),
    }
    rows = []
    for batch_size in batch_sizes:
        for memory_format in ("NCHW", "channels_last"):
            fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
            x = torch.randn(batch_size, 3, resolution, resolution).contiguous(memory_format=fmt)
            for model in models.values():
                model.to(memory_format=fmt)
            with torch.inference_mode():
                seconds = interleaved_medians({name: partial(model, x) for name, model in models.items()},
                                              rounds, warmup)
            rows += [BenchRow(batch_size, memory_format, variant, seconds[variant] * 1000, seconds["timm"] * 1000)
                     for variant in ("eager", "BN folded")]
    return rows


def bench_table(rows: list[BenchRow], threads: int) -> Table:
    """The benchmark as a table for ``mobilenets bench``."""
    return Table(
        key="bench_backbone",
        title=f"Backbone inference, 1.0 MobileNet-224 vs timm mobilenetv1_100 ({threads} threads, median)",
        columns=["batch", "layout", "ours", "ours ms", "timm ms", "ours img/s", "timm img/s", "timm/ours"],
        rows=[
            [r.batch_size, r.memory_format, r.variant, f"{r.ours_ms:.2f}", f"{r.timm_ms:.2f}",
             f"{1000 * r.batch_size / r.ours_ms:.1f}", f"{1000 * r.batch_size / r.timm_ms:.1f}", f"{r.ratio:.2f}"]
            for r in rows
        ],
    )
