"""Training-speed and data-loading benchmarks for the tasks (``mobilenets bench train`` / ``bench data``).

Training speed compares one full optimizer step (forward, cross-entropy, backward, RMSprop) of our
classifier with timm's ``mobilenetv1_100`` given the same head, in one process, interleaved round by
round. Data speed measures JPEG decoding per core with each decoder, decode + augmentation, and the ImageNet
training loader with its default workers, beside what a training step consumes. Benchmarks only: nothing here is
asserted in tests.
"""

from __future__ import annotations

import os
import statistics
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
from mobilenets.tasks.augmentation import Augmentation
from mobilenets.tasks.classification import ImageNetDataModule, MobileNetClassifier, write_imagenet
from mobilenets.tasks.classification.imagenet import read_imagenet
from mobilenets.tasks.images import decode_with_pil, decode_with_torchcodec
from mobilenets.tasks.optim import RMSPROP_DEFAULTS

__all__ = ["bench_data", "bench_detection", "bench_faces", "bench_s2", "bench_shards", "bench_training"]


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


def bench_detection(resolution: int = 300, rounds: int = 20, warmup: int = 3, threads: int = 2) -> Table:
    """End-to-end detection latency at batch 1 (preprocess + network + box decoding + NMS): our SSD300 and
    SSDLite on 1.0 MobileNet beside torchvision's ``ssdlite320_mobilenet_v3_large``, random weights, interleaved."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    from mobilenets.tasks.detection.model import ssd_mobilenet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {
        "SSD300 MobileNet (ours)": ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=resolution),
        "SSDLite MobileNet (ours)": ssd_mobilenet(MobileNetV1(num_classes=0), 91, size=resolution, lite=True),
        "torchvision ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=91),
    }
    images = [torch.rand(3, resolution, resolution)]
    with torch.inference_mode():
        seconds = interleaved_medians({name: partial(model.eval(), images) for name, model in models.items()},
                                      rounds, warmup)
    reference = seconds["torchvision ssdlite320_mobilenet_v3_large"]
    rows = [[name, f"{median * 1000:.1f}", f"{reference / median:.2f}"] for name, median in seconds.items()]
    return Table(
        key="bench_detection",
        title=f"Detection latency, batch 1, {resolution} px input, {threads} threads (median of {rounds})",
        columns=["model", "ms", "torchvision ms / this ms"],
        rows=rows,
    )


def bench_s2(points: int = 1_000_000, reference_points: int = 50_000, rounds: int = 3) -> Table:
    """S2 leaf cell ids per second: our vectorised NumPy version against s2sphere, one point per call."""
    import numpy as np
    import s2sphere

    from mobilenets.tasks.geolocation.partition import cell_ids

    rng = np.random.default_rng(0)
    lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, points))), rng.uniform(-180, 180, points)
    ours = []
    for _ in range(rounds):
        start = time.perf_counter()
        cell_ids(lat, lon)
        ours.append(time.perf_counter() - start)
    start = time.perf_counter()
    for a, b in zip(lat[:reference_points], lon[:reference_points]):
        s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))
    reference_rate = reference_points / (time.perf_counter() - start)
    our_rate = points / statistics.median(ours)
    return Table(
        key="bench_s2",
        title=f"S2 cell ids of {points:,} random points (ours: median of {rounds}; s2sphere: {reference_points:,} points)",
        columns=["implementation", "points/s", "speed-up"],
        rows=[["mobilenets (NumPy, vectorised)", f"{our_rate:,.0f}", f"{our_rate / reference_rate:.1f}x"],
              ["s2sphere (per point)", f"{reference_rate:,.0f}", "1.0x"]],
    )


def bench_faces(rounds: int = 10, threads: int = 2) -> Table:
    """MTCNN face detection per photo: ours (PyTorch) against the ``mtcnn`` package's TensorFlow implementation of
    the same weights, on scikit-image's astronaut photo and on a 1024 x 768 scene with three faces of it pasted at
    different sizes; median milliseconds, interleaved rounds, and how far apart the two put the boxes."""
    import numpy as np
    from PIL import Image

    os.environ["KERAS_BACKEND"] = "tensorflow"  # the mtcnn package runs on TensorFlow's Keras
    try:
        import tensorflow as tf
        from mtcnn import MTCNN
        from skimage.data import astronaut
    except ImportError:
        raise SystemExit("the face benchmark compares against the mtcnn package on TensorFlow: "
                         "pip install 'mobilenet-suite[dev]'") from None
    from mobilenets.tasks.face_detection import FaceDetector

    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    portrait = Image.fromarray(astronaut())
    scene = Image.new("RGB", (1024, 768), (110, 120, 130))
    for (x, y), side in zip([(40, 80), (420, 200), (800, 500)], (320, 200, 120)):
        scene.paste(portrait.resize((side, side)), (x, y))
    ours, theirs = FaceDetector(), MTCNN()
    rows = []
    for name, picture in (("astronaut, 512 x 512, 1 face", portrait), ("scene, 1024 x 768, 3 faces", scene)):
        array = np.array(picture)
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        def detect_theirs(array=array):
            return theirs.detect_faces(array, box_format="xyxy", threshold_onet=0.7)

        seconds = interleaved_medians({"ours": partial(ours.detect, tensor), "theirs": detect_theirs}, rounds)
        ours_ms, theirs_ms = seconds["ours"] * 1000, seconds["theirs"] * 1000
        our_faces, their_faces = ours.detect(tensor), detect_theirs()
        gap = max((min(np.abs(np.array(face.box) - other["box"]).max() for other in their_faces)
                   for face in our_faces), default=float("nan"))
        rows.append([name, f"{ours_ms:.1f}", f"{theirs_ms:.1f}", f"{theirs_ms / ours_ms:.2f}x",
                     f"{len(our_faces)} / {len(their_faces)}", f"{gap:.1f}"])
    return Table(
        key="bench_faces",
        title=f"MTCNN face detection per photo, {threads} threads, median of {rounds} interleaved rounds",
        columns=["photo", "ours (ms)", "mtcnn package, TF (ms)", "speed-up", "faces (ours / theirs)",
                 "largest box gap (px)"],
        rows=rows,
    )


def _time_loader(data: Any, epochs: int = 1) -> tuple[float, float, int]:
    """(seconds from ``setup`` to the first batch, images/s after it, images seen)."""
    start = time.perf_counter()
    data.setup("fit")
    seen, first_batch, started = 0, None, None
    for _ in range(epochs):
        for batch in data.train_dataloader():
            if first_batch is None:
                first_batch, started = time.perf_counter() - start, time.perf_counter()
                continue
            seen += len(batch["label"])
    return first_batch, seen / (time.perf_counter() - started), seen


def bench_shards(num_images: int = 3000, csv_rows: int = 1_000_000, batch_size: int = 32, num_workers: int = 2,
                 resolution: int = 128) -> Table:
    """Geolocation training data from image files vs from WebDataset shards: the time from ``setup`` to the first
    batch and the images/s of the training loader over two epochs, on a synthetic geotagged set of
    ``num_images`` photos (70% of them training) written first.
    Then what shards still read at start-up for ``csv_rows`` photos: the coordinates of a CSV that size and
    their S2 partition (built once; later starts read the partition file)."""
    import numpy as np

    from mobilenets.tasks.geolocation import GeoDataModule
    from mobilenets.tasks.geolocation.data import read_geotagged_csv
    from mobilenets.tasks.geolocation.partition import build_partition
    from mobilenets.tasks.shards import write_shards

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "geo"
        options = dict(resolution=resolution, batch_size=batch_size, num_workers=num_workers, t1=200, t2=10)
        files = GeoDataModule(str(root), synthetic=True, synthetic_options={"num_images": num_images}, **options)
        files.prepare_data()
        write_shards(files, Path(scratch) / "shards", splits=("train",), maxcount=500)
        for name, data in (("image files", GeoDataModule(str(root), **options)),
                           ("shards", GeoDataModule(str(root), shards=str(Path(scratch) / "shards"), **options))):
            first, rate, seen = _time_loader(data, epochs=2)
            rows.append([name, f"{len(data.datasets['train']):,}", f"{first:.2f}", f"{rate:.0f}", seen])
        rng = np.random.default_rng(0)
        lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, csv_rows))), rng.uniform(-180, 180, csv_rows)
        big = Path(scratch) / "big.csv"
        with big.open("w") as handle:
            handle.write("IMG_ID,LAT,LON\n")
            handle.writelines(f"{i},{a:.6f},{b:.6f}\n" for i, (a, b) in enumerate(zip(lat, lon)))
        start = time.perf_counter()
        _, lat, lon, _ = read_geotagged_csv(big, ("IMG_ID", "LAT", "LON"))
        read = time.perf_counter() - start
        start = time.perf_counter()
        partition = build_partition(lat, lon, 10_000, 50, 2, 13)
        built = time.perf_counter() - start
    return Table(
        key="bench_shards",
        title=f"Geolocation training data, {resolution} px, batch {batch_size}, {num_workers} workers",
        columns=["source", "training photos", "setup to first batch (s)", "images/s", "images timed"],
        rows=rows,
        notes=[f"Start-up from shards for {csv_rows:,} photos: reading the CSV's coordinates {read:.1f} s, their "
               f"S2 partition (t1 10,000, t2 50: {len(partition)} cells) {built:.1f} s, once; no image file is "
               f"listed or opened."],
    )
