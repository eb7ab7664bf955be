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
    """One variant of ours against timm run the same way (eager, or compiled alike); ``compile_s``: the first
    call's seconds, compiling included, of a compiled variant (ours, timm)."""

    batch_size: int
    memory_format: str
    variant: str
    ours_ms: float
    timm_ms: float
    compile_s: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        return self.timm_ms / self.ours_ms


def bench_backbone(
    batch_sizes: tuple[int, ...] = (1, 32), rounds: int = 20, warmup: int = 3, threads: int = 2, resolution: int = 224,
    compile: bool = False,
) -> list[BenchRow]:
    """Median ms per batch for ours (eager and BN-folded) and timm, NCHW and channels_last; with ``compile``, also
    our BN-folded network and timm's, each ``torch.compile``d (inductor's defaults)."""
    try:
        import timm
    except ImportError:
        raise SystemExit("the backbone benchmark compares against timm: pip install 'mobilenet-suite[dev]'") from None
    torch.set_num_threads(threads)
    ours = MobileNetV1(alpha=1.0).eval()
    reference = timm.create_model("mobilenetv1_100", pretrained=False).eval()
    models = {"eager": ours, "BN folded": fold_batchnorm(ours), "timm": reference}
    references = {"eager": "timm", "BN folded": "timm"}
    if compile:
        models |= {"compiled (BN folded)": torch.compile(fold_batchnorm(ours)), "timm compiled": torch.compile(
            timm.create_model("mobilenetv1_100", pretrained=False).eval())}
        references["compiled (BN folded)"] = "timm compiled"
    rows = []
    for batch_size in batch_sizes:
        for memory_format in ("NCHW", "channels_last"):
            fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
            x = torch.randn(batch_size, 3, resolution, resolution).contiguous(memory_format=fmt)
            for model in models.values():
                model.to(memory_format=fmt)
            with torch.inference_mode():
                first = {name: interleaved_medians({name: partial(models[name], x)}, rounds=1, warmup=0)[name]
                         for name in models if "compiled" in name}  # compiling happens on the first call
                seconds = interleaved_medians({name: partial(model, x) for name, model in models.items()},
                                              rounds, warmup)
            rows += [BenchRow(batch_size, memory_format, variant, seconds[variant] * 1000,
                              seconds[timm_variant] * 1000,
                              (first[variant], first[timm_variant]) if variant in first else None)
                     for variant, timm_variant in references.items()]
    return rows


def bench_table(rows: list[BenchRow], threads: int) -> Table:
    """The benchmark as a table for ``mobilenets bench``."""
    return Table(
        key="bench_backbone",
        title=f"Backbone inference, 1.0 MobileNet-224 vs timm mobilenetv1_100 ({threads} threads, median)",
        columns=["batch", "layout", "ours", "ours ms", "timm ms (run alike)", "ours img/s", "timm img/s", "timm/ours",
                 "first call s (ours / timm)"],
        rows=[
            [r.batch_size, r.memory_format, r.variant, f"{r.ours_ms:.2f}", f"{r.timm_ms:.2f}",
             f"{1000 * r.batch_size / r.ours_ms:.1f}", f"{1000 * r.batch_size / r.timm_ms:.1f}", f"{r.ratio:.2f}",
             f"{r.compile_s[0]:.1f} / {r.compile_s[1]:.1f}" if r.compile_s else ""]
            for r in rows
        ],
    )
