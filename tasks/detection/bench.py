"""Detection benchmarks: ``mobilenets bench detection`` (end-to-end latency beside torchvision's SSDLite) and
``mobilenets bench detection-train``: how fast our SSDs learn beside torchvision's SSDLite recipe.

In one process, on the same synthetic COCO data, every entry trains for the same number of optimizer steps at
the same batch size and is scored with the same COCOeval on the same validation images. The references are
torchvision's own: its ``SSDLiteHead`` (3x3 depthwise + BN predictors, normal(0, 0.03) init), its extra blocks,
its ``DefaultBoxGenerator`` and its documented training settings (SGD, momentum 0.9, lr 0.15 at batch 192 scaled
linearly to this batch, weight decay 4e-5, cosine schedule, linear warm-up through the first epoch, ``ssdlite``
augmentation: IoU crop + flip) on our MobileNet v1 body, and ``ssdlite320_mobilenet_v3_large`` from scratch.
Benchmarks only: nothing here is asserted in tests.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from pycocotools.coco import COCO
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead, _extra_block, _normal_init
from torchvision.transforms import v2

from mobilenets.backbone import BackboneConfig, MobileNetV1
from mobilenets.core.tables import Table
from mobilenets.core.timing import interleaved_medians
from mobilenets.tasks.detection.data import CocoDetectionDataset, collate_detection, load_coco, ssd_augmentation
from mobilenets.tasks.detection.metrics import coco_evaluate, coco_results
from mobilenets.tasks.detection.model import FEATURE_LAYERS, ssd_mobilenet
from mobilenets.tasks.detection.synthetic import write_coco
from mobilenets.tasks.detection.task import DetectionTask

__all__ = ["TrainingEntry", "bench_detection", "bench_detection_training", "default_entries", "training_table"]

#: torchvision's documented SSDLite recipe (references/detection/README.md): lr 0.15 at 8 GPUs x 24 images
TORCHVISION_LR, TORCHVISION_BATCH = 0.15, 192
RECIPE_ON_V1 = "torchvision SSDLite recipe on MobileNet v1"


@dataclass
class TrainingEntry:
    """One row: a detector, its optimizer and schedule for a number of steps, and its training augmentation."""

    name: str
    build: Callable[[int], SSD]  # num_classes with the background -> model
    optimizer: Callable[[SSD, int, int], tuple[torch.optim.Optimizer, Any]]  # model, steps, steps per epoch
    augmentation: Callable[[], v2.Transform]
    loss: Callable[[SSD, dict], torch.Tensor] = (  # torchvision's SSD loss by default
        lambda model, batch: sum(model(batch["image"], batch["target"]).values()))


def _torchvision_optimizer(model: SSD, steps: int, steps_per_epoch: int, batch_size: int) -> tuple:
    """torchvision's detection reference: SGD, cosine over the run, linear warm-up (factor 1e-3) in epoch one."""
    optimizer = torch.optim.SGD(model.parameters(), lr=TORCHVISION_LR * batch_size / TORCHVISION_BATCH,
                                momentum=0.9, weight_decay=4e-5)
    warmup = max(1, min(1000, steps_per_epoch - 1))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (
        1e-3 + (1 - 1e-3) * step / warmup if step < warmup else 1.0) * 0.5 * (1 + math.cos(math.pi * step / steps)))
    return optimizer, schedule


def _task_optimizer(task: DetectionTask, steps: int) -> tuple:
    """The task's own optimizer and schedule, as ``mobilenets fit`` builds them, over ``steps`` steps."""
    task.hparams.lr_scheduler_kwargs = {**(task.hparams.lr_scheduler_kwargs or {}), "T_max": steps}
    configured = task.build_optimizers(steps, epochs=1)
    scheduler = configured.get("lr_scheduler", {}).get("scheduler")
    return configured["optimizer"], scheduler


class _TorchvisionLiteFeatures(nn.Module):
    """Our MobileNet v1 body (layers 11 and 13) with torchvision's SSDLite extra blocks and their init."""

    def __init__(self, body: MobileNetV1, extra_depths: list[int], norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        body.reset_classifier(0)
        self.body = body
        channels = [body.endpoint_info(n)["num_chs"] for n in FEATURE_LAYERS]
        depths = [channels[-1], *extra_depths]
        self.extra = nn.ModuleList(_extra_block(a, b, norm_layer) for a, b in zip(depths, depths[1:]))
        _normal_init(self.extra)
        self.out_channels = channels + list(extra_depths)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = list(self.body.forward_endpoints(images, FEATURE_LAYERS).values())
        for block in self.extra:
            maps.append(block(maps[-1]))
        return {str(i): feature for i, feature in enumerate(maps)}


def _torchvision_head_on_v1(alpha: float, extra_depths: list[int], num_classes: int) -> SSD:
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    features = _TorchvisionLiteFeatures(MobileNetV1(alpha=alpha, num_classes=0), extra_depths, norm_layer)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(features.out_channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    body = features.body
    return SSD(features, anchors, (320, 320), num_classes, head=head,
               image_mean=body.input_mean.flatten().tolist(), image_std=body.input_std.flatten().tolist(),
               score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)


def default_entries(task_args: dict[str, Any], batch_size: int, augment: str = "light") -> list[TrainingEntry]:
    """(a) our SSD300 and (b) SSDLite with the task's arguments (the demo config's by default), (c) torchvision's
    SSDLite recipe on the same MobileNet v1 body, (d) torchvision's ``ssdlite320_mobilenet_v3_large``, and (e) the
    head, init and anchors of (c) trained with our optimizer and augmentation."""
    alpha = task_args.get("backbone", {}).get("alpha", 1.0)
    extra_depths = list(task_args.get("extra_depths", [512, 256, 256, 128]))
    tasks: dict[str, DetectionTask] = {}

    def ours(lite: bool) -> TrainingEntry:
        name = f"{'SSDLite' if lite else 'SSD300'} MobileNet (ours)"

        def build(num_classes: int) -> SSD:
            args = {**task_args, "backbone": BackboneConfig(**task_args.get("backbone", {})), "lite": lite}
            tasks[name] = DetectionTask(**{**args, "num_classes": num_classes - 1, "channels_last": False})
            return tasks[name].model

        return TrainingEntry(name, build, lambda model, steps, per_epoch: _task_optimizer(tasks[name], steps),
                             partial(ssd_augmentation, augment),
                             lambda model, batch: tasks[name].supervised_loss(batch).loss)

    def torchvision_head_with_our_training(num_classes: int) -> SSD:
        # the same head, init and anchors as (c), trained as our rows are: tells the head from the recipe
        tasks["head"] = DetectionTask(**{**task_args, "backbone": BackboneConfig(**task_args.get("backbone", {})),
                                         "num_classes": num_classes - 1, "channels_last": False})
        tasks["head"].model = _torchvision_head_on_v1(alpha, extra_depths, num_classes)
        return tasks["head"].model

    reference_optimizer = partial(_torchvision_optimizer, batch_size=batch_size)
    return [
        ours(lite=False),
        ours(lite=True),
        TrainingEntry(RECIPE_ON_V1, partial(_torchvision_head_on_v1, alpha, extra_depths),
                      reference_optimizer,
                      partial(ssd_augmentation, "ssdlite")),
        TrainingEntry("torchvision ssdlite320_mobilenet_v3_large",
                      lambda num_classes: ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                        num_classes=num_classes),
                      reference_optimizer,
                      partial(ssd_augmentation, "ssdlite")),
        TrainingEntry("torchvision SSDLite head on MobileNet v1, our optimizer and augmentation",
                      torchvision_head_with_our_training,
                      lambda model, steps, per_epoch: _task_optimizer(tasks["head"], steps),
                      partial(ssd_augmentation, augment)),
    ]


def _batches(dataset: CocoDetectionDataset, batch_size: int, seed: int) -> Iterator[dict]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
                              collate_fn=collate_detection)


def _evaluate(model: SSD, dataset: CocoDetectionDataset, coco: COCO, category_ids: list[int]) -> dict[str, float]:
    model.eval()
    detections = []
    with torch.inference_mode():
        for start in range(0, len(dataset), 16):
            samples = [dataset[i] for i in range(start, min(start + 16, len(dataset)))]
            detections += coco_results(model([s["image"] for s in samples]), [s["image_id"] for s in samples],
                                       category_ids)
    return coco_evaluate(coco, detections, dataset.image_ids)


def _config_blocks(config: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A detection config's model and data ``init_args``."""
    import yaml

    from mobilenets.configs import config_path

    loaded = yaml.safe_load(config_path(config).read_text())
    return dict(loaded["model"].get("init_args", {})), dict(loaded["data"].get("init_args", {}))


def bench_detection_training(config: str = "demo/detection.yaml", steps: int = 100, batch_size: int | None = None,
                             seed: int = 0, threads: int = 2, entries: list[TrainingEntry] | None = None,
                             root: str | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every entry for ``steps`` steps; one row per entry (name, steps, seconds, mAP, mAP50).

    Our two rows take the model arguments and augmentation of ``config`` (a file or a packaged config name);
    every row trains on that config's synthetic data (``synthetic_options``), written to ``root`` or a
    temporary folder, at its batch size unless ``batch_size`` is given.
    """
    torch.set_num_threads(threads)
    task_args, data_args = _config_blocks(config)
    batch_size = batch_size or data_args.get("batch_size", 16)
    entries = entries or default_entries(task_args, batch_size, data_args.get("augment", "ssd"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(root or scratch)
        write_coco(folder, seed=seed, **data_args.get("synthetic_options", {}))
        train_coco = load_coco(folder / "annotations" / "instances_train2017.json")
        val_coco = load_coco(folder / "annotations" / "instances_val2017.json")
        category_ids = sorted(train_coco.cats)
        label_of = {category: label for label, category in enumerate(category_ids, start=1)}
        val = CocoDetectionDataset(val_coco, folder / "val2017", label_of, v2.ToDtype(torch.float32, scale=True),
                                   "instances_val2017.json")
        rows = []
        for entry in entries:
            torch.manual_seed(seed)
            model = entry.build(len(category_ids) + 1)
            train = CocoDetectionDataset(train_coco, folder / "train2017", label_of, entry.augmentation(),
                                         "instances_train2017.json")
            optimizer, schedule = entry.optimizer(model, steps, len(train) // batch_size)
            batches = _batches(train, batch_size, seed)
            model.train()
            start = time.perf_counter()
            for _ in range(steps):
                loss = entry.loss(model, next(batches))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
            seconds = time.perf_counter() - start
            stats = _evaluate(model, val, val_coco, category_ids)
            rows.append({"name": entry.name, "steps": steps, "batch_size": batch_size, "seconds": round(seconds, 1),
                         "mAP": round(stats["mAP"], 4), "mAP50": round(stats["mAP50"], 4)})
    return rows


def training_table(rows: list[dict[str, Any]]) -> Table:
    """The rows as a table, each with its mAP50 relative to the torchvision recipe on the same body."""
    reference = next((r["mAP50"] for r in rows if r["name"] == RECIPE_ON_V1), None)
    return Table(
        key="bench_detection_train",
        title=f"Detection training, {rows[0]['steps']} steps at batch {rows[0]['batch_size']}, synthetic COCO "
              "(val mAP)",
        columns=["model", "steps", "seconds", "mAP", "mAP50", "mAP50 / recipe on v1"],
        rows=[[r["name"], r["steps"], r["seconds"], f"{r['mAP']:.3f}", f"{r['mAP50']:.3f}",
               f"{r['mAP50'] / reference:.2f}" if reference else "-"] for r in rows],
    )


def bench_detection(resolution: int = 300, rounds: int = 20, warmup: int = 3, threads: int = 2) -> Table:
    """End-to-end detection latency at batch 1 (preprocess + network + box decoding + NMS): our SSD300 and
    SSDLite on 1.0 MobileNet beside torchvision's ``ssdlite320_mobilenet_v3_large``, random weights, interleaved."""
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
