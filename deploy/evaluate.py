"""Running exported models: onnxruntime sessions, parity with PyTorch, int8 quantization, and the task metric of
an exported model on the task's own validation data.

A *runner* is anything that maps a batch of images in [0, 1] (N, 3, S, S) to the export's outputs as numpy
arrays: ``TorchRunner`` (the PyTorch inference graph) or ``OnnxRunner`` (an onnxruntime session). The same
evaluation code scores both, so PyTorch, fp32 ONNX and int8 ONNX are compared like for like.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset
from torchvision.ops import box_iou

from mobilenets.deploy.export import DetectionExport, TaskExport

__all__ = ["OnnxRunner", "TorchRunner", "calibration_batches", "evaluate", "export_batches", "parity", "quantize_int8"]

Runner = Callable[[Tensor], tuple[np.ndarray, ...]]


class TorchRunner:
    """The PyTorch inference graph as a runner (detection: with its PyTorch NMS)."""

    def __init__(self, export: TaskExport) -> None:
        self.export = export

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[np.ndarray, ...]:
        outputs = self.export.detect(images) if isinstance(self.export, DetectionExport) else self.export(images)
        return tuple(output.numpy() for output in outputs)


class OnnxRunner:
    """An onnxruntime CPU session over an exported file, with a fixed number of threads."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3  # no warnings about hardware-specific graph rewrites
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
        array = images.numpy() if isinstance(images, Tensor) else images
        return tuple(self.session.run(None, {"images": np.ascontiguousarray(array, dtype=np.float32)}))


def export_batches(loader: Iterable[dict], size: int) -> Iterator[dict[str, Any]]:
    """A task loader's batches with images made the export's (N, 3, size, size) input.

    Detection data keeps images at their own size (SSD resizes them); here they are resized the way SSD's
    transform does (bilinear, to size x size) and ``scale`` records how to map boxes back to the image's pixels.
    Other batches of another size (a distiller's data, at the teacher's size) are resized as the distiller does.
    """
    for batch in loader:
        images = batch["image"]
        if isinstance(images, (list, tuple)):
            batch["scale"] = [(image.shape[-1] / size, image.shape[-2] / size) for image in images]
            images = torch.cat([F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)
                                for image in images])
        elif images.shape[-2:] != (size, size):  # a distiller's data is at the teacher's size: the student's view
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        batch["image"] = images.contiguous()
        yield batch


def calibration_batches(datamodule: Any, size: int, batches: int, seed: int = 0) -> list[np.ndarray]:
    """``batches`` batches of training images (seeded order, the evaluation transform: no augmentation) for int8
    calibration; the validation images stay unseen, so the int8 metric on them is fair."""
    datamodule.setup("fit")
    dataset = copy.copy(datamodule.datasets["train"])
    dataset.transform = datamodule.eval_transform()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    size_of_batch = datamodule.hparams.batch_size
    subset = Subset(dataset, order[:batches * size_of_batch])
    loader = DataLoader(subset, batch_size=size_of_batch, collate_fn=datamodule.collate_fn)
    return [batch["image"].numpy() for batch in export_batches(loader, size)]


def _detections_to_coco(outputs: tuple[np.ndarray, ...], batch: dict, category_ids: list[int]) -> list[dict]:
    batch_index, boxes, scores, labels = outputs
    rows = []
    for image, box, score, label in zip(batch_index.tolist(), boxes.tolist(), scores.tolist(), labels.tolist()):
        sx, sy = batch["scale"][image]
        x0, y0, x1, y1 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
        rows.append({"image_id": int(batch["image_id"][image]), "category_id": category_ids[label - 1],
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return rows


@torch.no_grad()
def evaluate(run: Runner, export: TaskExport, task: Any, datamodule: Any, stage: str = "val") -> dict[str, float]:
    """The task's own validation metric (top-1, mAP, km accuracy, verification accuracy, COCO mAP) of ``run``'s
    outputs over the data module's ``stage`` split; the metric objects are the task's, fresh."""
    from mobilenets.tasks.detection.metrics import coco_evaluate
    from mobilenets.tasks.face_embedding.metrics import squared_distances, verification_metrics
    from mobilenets.tasks.geolocation import GeolocationTask

    datamodule.setup("validate")
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    batches = export_batches(loader, export.resolution)
    if isinstance(export, DetectionExport):
        detections, image_ids = [], []
        for batch in batches:
            detections += _detections_to_coco(run(batch["image"]), batch, export.category_ids)
            image_ids += [int(i) for i in batch["image_id"]]
        stats = coco_evaluate(datamodule.coco_for(stage), detections, image_ids)
        return {"mAP": stats["mAP"], "mAP50": stats["mAP50"]}
    if hasattr(export, "threshold"):  # embeddings: LFW-style verification over the data's pairs
        embeddings: dict[int, np.ndarray] = {}
        for batch in batches:
            embeddings.update(zip(batch["label"].tolist(), run(batch["image"])[0]))
        pairs = [(pair, a, b) for pair, (a, b) in zip(datamodule.pairs, datamodule.pair_indices)]
        results = verification_metrics(
            squared_distances(np.stack([embeddings[a] for _, a, _ in pairs]),
                              np.stack([embeddings[b] for _, _, b in pairs])),
            np.array([pair.same for pair, _, _ in pairs]), np.array([pair.fold for pair, _, _ in pairs]),
            val_far=task.hparams.val_far, tar_far=task.hparams.tar_far)
        return {"accuracy": float(results["accuracy"]), "auc": float(results["auc"])}
    metrics = task.val_metrics.clone()
    metrics.reset()
    for batch in batches:
        outputs = run(batch["image"])
        if isinstance(task, GeolocationTask):
            coordinates = torch.from_numpy(outputs[3]).double()
            metrics.update(coordinates[:, 0], coordinates[:, 1], batch["label"][:, 0], batch["label"][:, 1])
        else:  # probabilities: the same ranking, so the same top-k and average precision, as the logits
            metrics.update(torch.from_numpy(outputs[0]), batch["label"].long())
    return {name.removeprefix("val/"): float(value) for name, value in metrics.compute().items()}


def _match_detections(reference: tuple[np.ndarray, ...], exported: tuple[np.ndarray, ...],
                      min_score: float) -> dict[str, float]:
    """Each reference detection scoring at least ``min_score`` matched to the exported detection of the same
    image and class with the highest IoU; near-equal scores may swap order, so rows are not compared in place."""
    matched, total, box_diff, score_diff = 0, 0, 0.0, 0.0
    ref = [torch.from_numpy(np.asarray(a)) for a in reference]
    out = [torch.from_numpy(np.asarray(a)) for a in exported]
    for image in torch.unique(ref[0]).tolist():
        for label in torch.unique(ref[3][ref[0] == image]).tolist():
            mine = (ref[0] == image) & (ref[3] == label) & (ref[2] >= min_score)
            theirs = (out[0] == image) & (out[3] == label)
            total += int(mine.sum())
            if not mine.any() or not theirs.any():
                continue
            iou, best = box_iou(ref[1][mine], out[1][theirs]).max(dim=1)
            good = iou > 0.99
            matched += int(good.sum())
            if good.any():
                box_diff = max(box_diff, float((ref[1][mine][good] - out[1][theirs][best[good]]).abs().max()))
                score_diff = max(score_diff, float((ref[2][mine][good] - out[2][theirs][best[good]]).abs().max()))
    return {"detections_compared": total, "matched": matched / total if total else 1.0,
            "max_box_diff": box_diff, "max_score_diff": score_diff}


def parity(export: TaskExport, runner: Runner, images: Tensor, min_score: float = 0.05) -> dict[str, float]:
    """How far ``runner`` (an exported file) is from the PyTorch graph on ``images``: the largest absolute
    difference per float output; for detection, the share of detections matched and their differences."""
    reference, exported = TorchRunner(export)(images), runner(images)
    if isinstance(export, DetectionExport):
        return _match_detections(reference, exported, min_score)
    report = {}
    for name, ours, theirs in zip(export.output_names, reference, exported):
        if ours.shape != theirs.shape:
            raise AssertionError(f"{name}: PyTorch gives shape {ours.shape}, the export {theirs.shape}")
        if np.issubdtype(ours.dtype, np.floating):
            report[f"{name}_max_abs_diff"] = float(np.abs(ours - theirs).max())
        else:  # indices (top classes or cells): the share that agree
            report[f"{name}_agreement"] = float((ours == theirs).mean())
    return report


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable[np.ndarray],
                  per_channel: bool = True) -> Path:
    """onnxruntime's static int8 quantization (QDQ, unsigned activations, signed per-channel weights), its
    activation ranges calibrated on ``calibration`` batches. Convolutions, matrix products and their ReLU6 become
    int8 (the clip then folds into the int8 convolution); the post-processing (softmax, box decoding, NMS) stays
    in float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": np.ascontiguousarray(batch, dtype=np.float32)}

    source, target = Path(source), Path(target)
    prepared = target.with_name(target.stem + ".prepared.onnx")
    partial = target.with_name(target.name + ".partial")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul", "Clip", "Relu"])
        partial.replace(target)
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target
