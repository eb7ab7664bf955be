"""``mobilenets bench gpu``: the suite's training paths on one GPU, beside the references, in one run.

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
from mobilenets.tasks.augmentation import Augmentation
from mobilenets.tasks.heads import MobileNetClassifier
from mobilenets.tasks.images import decode_image_file

__all__ = ["bench_gpu"]


def _timed_steps(step: Callable[[], Any], warmup: int, steps: int) -> float:
    """Seconds per step after ``warmup`` steps, the GPU synchronised around the timed ones."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def _classifier_rows(batch_size: int, warmup: int, steps: int) -> list[list[Any]]:
    import timm

    images = torch.randn(batch_size, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch_size,), device="cuda")
    rows = []
    for name, build in (("ours", lambda: MobileNetClassifier(MobileNetV1(alpha=1.0), 1000)),
                        ("timm mobilenetv1_100", lambda: timm.create_model("mobilenetv1_100", num_classes=1000))):
        for compiled in (False, True):
            model = build().cuda().to(memory_format=torch.channels_last).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            forward = torch.compile(model) if compiled else model

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = F.cross_entropy(forward(images), labels)
                loss.backward()
                optimizer.step()

            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            step()  # the first step: compiling, where compiled
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            seconds = _timed_steps(step, warmup, steps)
            rows.append([name, "compiled" if compiled else "eager", f"{batch_size / seconds:.0f}",
                         f"{first:.1f}" if compiled else "", f"{torch.cuda.max_memory_allocated() / 2**30:.2f}"])
    return rows


def _detection_rows(batch_size: int, warmup: int, steps: int) -> list[list[Any]]:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    from mobilenets.tasks.detection.model import ssd_mobilenet

    rows = []
    models = {"SSD300, 1.0 MobileNet (ours)": lambda: ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=300),
              "SSDLite, 1.0 MobileNet (ours)": lambda: ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=300,
                                                                     lite=True),
              "torchvision ssdlite320_mobilenet_v3_large": lambda: ssdlite320_mobilenet_v3_large(
                  weights=None, weights_backbone=None, num_classes=91)}
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 320, 320, generator=generator).cuda() for _ in range(batch_size)]
    targets = []
    for _ in range(batch_size):
        corner = torch.rand(4, 2, generator=generator) * 200
        boxes = torch.cat([corner, corner + 20 + torch.rand(4, 2, generator=generator) * 100], dim=1)
        targets.append({"boxes": boxes.cuda(), "labels": torch.randint(1, 91, (4,), generator=generator).cuda()})
    for name, build in models.items():
        model = build().cuda().train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                losses = model(images, targets)
            sum(losses.values()).backward()
            optimizer.step()

        torch.cuda.reset_peak_memory_stats()
        seconds = _timed_steps(step, warmup, steps)
        rows.append([name, f"{1 / seconds:.2f}", f"{batch_size / seconds:.0f}",
                     f"{torch.cuda.max_memory_allocated() / 2**30:.2f}"])
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


def _input_rows(count: int, batch_size: int, workers: int) -> list[list[Any]]:
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    rng = np.random.default_rng(0)
    files = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        files.append(buffer.getvalue())
    loader = DataLoader(_JpegFiles(files), batch_size=batch_size, num_workers=workers, pin_memory=True)
    start = time.perf_counter()
    for batch in loader:
        batch.cuda(non_blocking=True)
    torch.cuda.synchronize()
    cpu_rate = count / (time.perf_counter() - start)
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
    decode_jpeg(encoded[:batch_size], mode=ImageReadMode.RGB, device="cuda")  # the decoder's warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, count, batch_size):
        decoded = decode_jpeg(encoded[first:first + batch_size], mode=ImageReadMode.RGB, device="cuda")
        torch.stack([TF.resized_crop(image, 20, 30, 300, 400, [224, 224], antialias=True) for image in decoded])
    torch.cuda.synchronize()
    gpu_rate = count / (time.perf_counter() - start)
    return [[f"TorchCodec in {workers} loader workers, the training crop, to the GPU", f"{cpu_rate:.0f}"],
            ["torchvision.io.decode_jpeg(device='cuda') of the bytes, a crop on the GPU", f"{gpu_rate:.0f}"]]


def bench_gpu(batch_size: int = 128, steps: int = 20, warmup: int = 5, detection_batch: int = 32,
              images: int = 1024) -> list[Table] | None:
    """The tables (classification training, detection training, input pipeline), or None without a GPU."""
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name()
    classification = _classifier_rows(batch_size, warmup, steps)
    detection = _detection_rows(detection_batch, max(2, warmup // 2), max(5, steps // 2))
    workers = min(16, os.cpu_count() or 1)
    pipeline = _input_rows(images, batch_size, workers)
    step = max(float(row[2]) for row in classification if row[0] == "ours")
    pipeline.append([f"the training step, ours at its fastest (batch {batch_size})", f"{step:.0f}"])
    return [
        Table(key="gpu_classification", rows=classification,
              title=f"1.0 MobileNet-224 training on {device}, batch {batch_size}, bf16 autocast, channels-last, SGD",
              columns=["model", "mode", "images/s", "compile s (first step)", "peak GiB"]),
        Table(key="gpu_detection", rows=detection,
              title=f"Detection training on {device}, batch {detection_batch}, 320 px images, bf16 autocast, SGD",
              columns=["model", "steps/s", "images/s", "peak GiB"]),
        Table(key="gpu_input", rows=pipeline, title=f"Input pipeline, {images} JPEGs of 500 x 375, on {device}",
              columns=["path", "images/s"]),
    ]
