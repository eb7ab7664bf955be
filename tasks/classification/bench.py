"""Training-speed and data-loading benchmarks of the classifier (``mobilenets bench train`` / ``bench data``).

Training speed compares one full optimizer step (forward, cross-entropy, backward, RMSprop) of our classifier with
timm's ``mobilenetv1_100`` given the same head, in one process, interleaved round by round. Data speed measures
JPEG decoding per core with each decoder, decode + augmentation, and the ImageNet training loader with its
default workers, beside what a training step consumes. Benchmarks only: nothing here is asserted in tests.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import tv_tensors

from mobilenets.backbone import MobileNetV1
from mobilenets.core.tables import Table
from mobilenets.core.timing import interleaved_medians
from mobilenets.tasks.classification.imagenet import ImageNetDataModule, read_imagenet
from mobilenets.tasks.classification.model import MobileNetClassifier
from mobilenets.tasks.classification.synthetic import write_imagenet
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.data.images import decode_with_pil, decode_with_torchcodec
from mobilenets.tasks.optim import RMSPROP_DEFAULTS

__all__ = ["bench_data", "bench_training", "training_profile"]


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                labels: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def bench_training(batch_size: int = 32, resolution: int = 224, num_classes: int = 120, rounds: int = 8,
                   warmup: int = 2, threads: int = 2, compile: bool = False) -> Table:
    """Images per second of a training step, ours vs timm, NCHW and channels_last; with ``compile``, also both
    ``torch.compile``d (inductor's defaults) in channels_last, beside timm's eager step, with the compile time."""
    try:
        import timm
    except ImportError:
        raise SystemExit("the training benchmark compares against timm: pip install 'mobilenet-suite[dev]'") from None
    torch.set_num_threads(threads)
    rows = []
    for memory_format, compiled in [("NCHW", False), ("channels_last", False)] + [("channels_last", True)] * compile:
        fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        models = {
            "ours": MobileNetClassifier(MobileNetV1(alpha=1.0), num_classes),
            "timm": timm.create_model("mobilenetv1_100", pretrained=False, num_classes=num_classes),
        }
        optimizers, steps = {}, {}
        for name, model in models.items():
            model.train().to(memory_format=fmt)
            optimizers[name] = torch.optim.RMSprop(model.parameters(), lr=1e-3, **RMSPROP_DEFAULTS)
        images = torch.randn(batch_size, 3, resolution, resolution).contiguous(memory_format=fmt)
        labels = torch.randint(0, num_classes, (batch_size,))
        for name, model in models.items():
            steps[name] = partial(_train_step, torch.compile(model) if compiled else model, optimizers[name], images,
                                  labels)
        first = ({name: interleaved_medians({name: step}, rounds=1, warmup=0)[name] for name, step in steps.items()}
                 if compiled else {})  # compiling happens in the first step
        seconds = interleaved_medians(steps, rounds, warmup)
        ours, reference = seconds["ours"], seconds["timm"]
        if not compiled:
            timm_eager = reference
        rows.append([batch_size, memory_format, "compiled" if compiled else "eager", f"{batch_size / ours:.1f}",
                     f"{batch_size / reference:.1f}", f"{reference / ours:.2f}", f"{timm_eager / ours:.2f}",
                     f"{first['ours']:.0f} / {first['timm']:.0f}" if first else ""])
    return Table(
        key="bench_train",
        title=f"Training step, 1.0 MobileNet-{resolution}, {num_classes} classes, RMSprop ({threads} threads, median)",
        columns=["batch", "layout", "mode", "ours img/s", "timm img/s (run alike)", "ours/timm speed",
                 "ours / timm eager (same layout)", "first step s (ours / timm)"],
        rows=rows,
    )


def training_profile(batch_size: int = 32, resolution: int = 224, num_classes: int = 120, threads: int = 2,
                     compile: bool = False, steps: int = 3, top: int = 12) -> Table:
    """Where a training step of ours (channels-last, RMSprop) spends its time: torch.profiler's operators by self
    CPU time over ``steps`` steps (after one untimed step, which compiles where ``compile``)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    model = MobileNetClassifier(MobileNetV1(alpha=1.0), num_classes).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, **RMSPROP_DEFAULTS)
    images = torch.randn(batch_size, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch_size,))
    step = partial(_train_step, torch.compile(model) if compile else model, optimizer, images, labels)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    rows = [[event.key[:70], f"{event.self_cpu_time_total / steps / 1000:.1f}",
             f"{100 * event.self_cpu_time_total / total:.1f}", event.count // steps] for event in events[:top]]
    return Table(key=f"bench_train_profile_{'compiled' if compile else 'eager'}", rows=rows,
                 title=f"Where a training step goes, 1.0 MobileNet-{resolution}, batch {batch_size}, channels-last, "
                       f"{'compiled' if compile else 'eager'} ({threads} threads, {steps} steps)",
                 columns=["operator (self CPU time)", "ms per step", "% of the step", "calls per step"])


def _decode_with_torchvision_io(path: Path) -> torch.Tensor:
    """torchvision.io's decoder, measured for comparison only: deprecated since torchvision 0.29 for TorchCodec."""
    import warnings

    from torchvision.io import ImageReadMode, decode_image, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def _decode_all(decode: Any, paths: list[Path], augment: Any = None) -> None:
    for path in paths:
        image = decode(path)
        if augment is not None:
            augment(tv_tensors.Image(image))


def _loader_rate(data: ImageNetDataModule, batches: int) -> float:
    """Images per second out of the training loader, timed from its first batch (workers up)."""
    data.setup("fit")
    seen, start, wanted = 0, None, batches * data.hparams.batch_size
    while seen < wanted:
        for batch in data.train_dataloader():
            if start is None:
                start = time.perf_counter()
                continue
            seen += len(batch["label"])
            if seen >= wanted:
                break
    return seen / (time.perf_counter() - start)


def bench_data(root: str | None = None, resolution: int = 224, batch_size: int = 32, num_workers: int | None = None,
               images: int = 120, rounds: int = 3, batches: int = 10, threads: int = 2) -> Table:
    """ImageNet training input against what training consumes: images/s per core of JPEG decoding (PIL,
    TorchCodec, torchvision.io) alone and with the training augmentation (random resized crop + flip), the
    training loader with its workers, and a 1.0 MobileNet-``resolution`` training step on the same CPU.

    Without ``root``, a synthetic ImageNet with real-sized JPEGs (500 x 375) is written to a temporary folder.
    Decoders are timed on one core (one thread), interleaved, median of ``rounds``.
    """
    with tempfile.TemporaryDirectory() as scratch:
        if root is None:
            root = str(write_imagenet(Path(scratch) / "imagenet", num_classes=4, train_per_class=images // 4 + 1,
                                      val_per_class=1, image_size=(500, 375)))
        paths = [record.path for record in read_imagenet(root)[0]["train"][:images]]
        augment = Augmentation().train_transform(resolution, 0.25)
        decoders = {"PIL": decode_with_pil, "TorchCodec (default)": decode_with_torchcodec,
                    "torchvision.io (deprecated)": _decode_with_torchvision_io}
        torch.set_num_threads(1)
        work = {}
        for name, decode in decoders.items():
            work[name] = partial(_decode_all, decode, paths)
            work[name + " +aug"] = partial(_decode_all, decode, paths, augment)
        rates = {name: len(paths) / seconds for name, seconds in interleaved_medians(work, rounds, warmup=0).items()}
        kwargs = {} if num_workers is None else {"num_workers": num_workers}
        data = ImageNetDataModule(root, resolution=resolution, batch_size=batch_size, **kwargs)
        loader = _loader_rate(data, batches)
    torch.set_num_threads(threads)
    model = MobileNetClassifier(MobileNetV1(alpha=1.0), 1000).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, **RMSPROP_DEFAULTS)
    step_images = torch.randn(batch_size, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch_size,))
    step = batch_size / interleaved_medians({"step": partial(_train_step, model, optimizer, step_images, labels)},
                                            rounds=3)["step"]
    rows = [[name, f"{rates[name]:.0f}", f"{rates[name + ' +aug']:.0f}"] for name in decoders]
    rows.append([f"training loader, {data.hparams.num_workers} workers", "", f"{loader:.0f} (all workers)"])
    rows.append([f"1.0 MobileNet-{resolution} training step, batch {batch_size}, {threads} threads (consumes)", "",
                 f"{step:.0f}"])
    return Table(
        key="bench_data",
        title=f"ImageNet input at {resolution} px: decoding per core vs a training step",
        columns=["", "decode img/s/core", "decode + crop + flip img/s/core"],
        rows=rows,
    )
