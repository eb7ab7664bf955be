"""``mobilenets bench gpu``: the suite's training paths on one GPU, beside the references, in one run (in the
detection package, whose SSD training it times beside the classifier's, which it builds from the shared head).

- 1.0 MobileNet-224 classification training, bf16 autocast and channels-last: images/s, eager and
  ``torch.compile``d, ours and timm's ``mobilenetv1_100`` under the same settings, and the compile time;
- SSD300 and SSDLite on 1.0 MobileNet, training steps/s, beside torchvision's ``ssdlite320_mobilenet_v3_large``
  recipe model;
- the input pipeline's images/s: JPEG decoding and the training crop in loader workers (TorchCodec), and on the GPU
  (``torchvision.io.decode_jpeg(device="cuda")`` of the bytes), beside the training step's images/s, to show
  whether input or compute limits training;
- peak GPU memory of each training row.

Random weights and synthetic images: speed, not accuracy. Without a GPU it says so in one line.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from mobilenets.backbone import MobileNetV1
from mobilenets.core.tables import Table
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.data.images import decode_image_file
from mobilenets.tasks.detection.model import ssd_mobilenet
from mobilenets.tasks.heads import MobileNetClassifier

__all__ = ["bench_gpu"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else ""


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _timed_steps(step: Callable[[], Any], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step after ``warmup`` steps, the GPU synchronised around the timed ones."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def _classifier_rows(batch_size: int, warmup: int, steps: int, device: torch.device,
                     compile_options: dict[str, Any], size: int) -> list[list[Any]]:
    import timm

    images = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch_size,), device=device)
    rows = []
    for name, build in (("ours", lambda: MobileNetClassifier(MobileNetV1(alpha=1.0), 1000)),
                        ("timm mobilenetv1_100", lambda: timm.create_model("mobilenetv1_100", num_classes=1000))):
        for compiled in (False, True):
            model = build().to(device, memory_format=torch.channels_last).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            forward = torch.compile(model, **compile_options) if compiled else model

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = F.cross_entropy(forward(images), labels)
                loss.backward()
                optimizer.step()

            _reset_peak(device)
            start = time.perf_counter()
            step()  # the first step: compiling, where compiled
            _synchronize(device)
            first = time.perf_counter() - start
            seconds = _timed_steps(step, warmup, steps, device)
            rows.append([name, "compiled" if compiled else "eager", f"{batch_size / seconds:.1f}",
                         f"{first:.1f}" if compiled else "", _peak_gib(device)])
    return rows


def _detection_rows(batch_size: int, warmup: int, steps: int, device: torch.device, size: int) -> list[list[Any]]:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    rows = []
    models = {"SSD300, 1.0 MobileNet (ours)": lambda: ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=300),
              "SSDLite300, 1.0 MobileNet (ours)": lambda: ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=300,
                                                                        lite=True),
              "torchvision ssdlite320_mobilenet_v3_large": lambda: ssdlite320_mobilenet_v3_large(
                  weights=None, weights_backbone=None, num_classes=91)}
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=generator).to(device) for _ in range(batch_size)]
    targets = []
    for _ in range(batch_size):
        corner = torch.rand(4, 2, generator=generator) * size / 2
        boxes = torch.cat([corner, corner + size / 16 + torch.rand(4, 2, generator=generator) * size / 4], dim=1)
        targets.append({"boxes": boxes.to(device),
                        "labels": torch.randint(1, 91, (4,), generator=generator).to(device)})
    for name, build in models.items():
        model = build().to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                losses = model(images, targets)
            sum(losses.values()).backward()
            optimizer.step()

        _reset_peak(device)
        seconds = _timed_steps(step, warmup, steps, device)
        rows.append([name, f"{1 / seconds:.2f}", f"{batch_size / seconds:.1f}", _peak_gib(device)])
    return rows


class _JpegFiles(Dataset):
    """JPEG bytes decoded and cropped in a loader worker, as the suite's training data is."""

    def __init__(self, files: list[bytes]) -> None:
        self.files, self.transform = files, Augmentation().train_transform(224, 0.08)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from torchvision import tv_tensors

        return self.transform(tv_tensors.Image(decode_image_file(self.files[index]))).as_subclass(torch.Tensor)


def _input_rows(count: int, batch_size: int, workers: int, device: torch.device) -> list[list[Any]]:
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    rng = np.random.default_rng(0)
    files = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        files.append(buffer.getvalue())
    loader = DataLoader(_JpegFiles(files), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    start = time.perf_counter()
    for batch in loader:
        batch.to(device, non_blocking=True)
    _synchronize(device)
    cpu_rate = count / (time.perf_counter() - start)
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
    decode_jpeg(encoded[:batch_size], mode=ImageReadMode.RGB, device=device)  # the decoder's warm-up
    _synchronize(device)
    start = time.perf_counter()
    for first in range(0, count, batch_size):
        decoded = decode_jpeg(encoded[first:first + batch_size], mode=ImageReadMode.RGB, device=device)
        torch.stack([TF.resized_crop(image, 20, 30, 300, 400, [224, 224], antialias=True) for image in decoded])
    _synchronize(device)
    device_rate = count / (time.perf_counter() - start)
    return [[f"TorchCodec in {workers} loader workers, the training crop, to the {device.type}", f"{cpu_rate:.0f}"],
            [f"torchvision.io.decode_jpeg(device='{device.type}') of the bytes, the crop there", f"{device_rate:.0f}"]]


def bench_gpu(batch_size: int = 128, steps: int = 20, warmup: int = 5, detection_batch: int = 32,
              images: int = 1024, device: str = "cuda", compile_options: dict[str, Any] | None = None,
              workers: int | None = None, resolution: int = 224, detection_size: int = 320) -> list[Table] | None:
    """The tables (classification training, detection training, input pipeline), or None without a GPU.
    ``device``, ``compile_options`` (``torch.compile``'s arguments), ``workers`` and the sizes let a test run the
    same code small on a CPU."""
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(target) if target.type == "cuda" else "CPU"
    classification = _classifier_rows(batch_size, warmup, steps, target, compile_options or {}, resolution)
    detection = _detection_rows(detection_batch, max(1, warmup // 2), max(1, steps // 2), target, detection_size)
    workers = min(16, os.cpu_count() or 1) if workers is None else workers
    pipeline = _input_rows(images, batch_size, workers, target)
    step = max(float(row[2]) for row in classification if row[0] == "ours")
    pipeline.append([f"the training step, ours at its fastest (batch {batch_size})", f"{step:.1f}"])
    return [
        Table(key="gpu_classification", rows=classification,
              title=f"1.0 MobileNet-{resolution} training on {name}, batch {batch_size}, bf16 autocast, "
                    f"channels-last, SGD",
              columns=["model", "mode", "images/s", "compile s (first step)", "peak GiB"]),
        Table(key="gpu_detection", rows=detection,
              title=f"Detection training on {name}, batch {detection_batch}, {detection_size} px images, bf16 "
                    f"autocast, SGD",
              columns=["model", "steps/s", "images/s", "peak GiB"]),
        Table(key="gpu_input", rows=pipeline, title=f"Input pipeline, {images} JPEGs of 500 x 375, on {name}",
              columns=["path", "images/s"]),
    ]
