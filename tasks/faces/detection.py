"""Face detection with five landmarks: MTCNN (Zhang et al. 2016), the detector FaceNet's alignment uses.

Hand-written in PyTorch because no maintained PyTorch MTCNN installs beside this torch (facenet-pytorch pins
torch < 2.3). The weights are the original MTCNN's, read from the files the ``mtcnn`` package's wheel carries
(``pip install mobilenet-suite[faces]``; its TensorFlow runtime is not needed): nothing is fetched.
The cascade: P-Net proposes boxes over an image pyramid, R-Net and O-Net re-score and refine them, O-Net adds the
landmarks (the subject's eyes, nose tip and mouth corners, ordered left to right as seen in the image).
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_area, nms, roi_align

from mobilenets.core.errors import SettingError

__all__ = ["Face", "FaceDetector", "LANDMARK_NAMES"]

#: O-Net's five landmarks, in its output order
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """A detected face: its box ``(x1, y1, x2, y2)`` in pixels, O-Net's score and the five landmarks ``(x, y)``."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def size(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def _conv(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel), nn.PReLU(out_channels)]


class _PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window per output cell at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(3, 10, 3), nn.MaxPool2d(2, 2, ceil_mode=True), *_conv(10, 16, 3),
                                  *_conv(16, 32, 3))
        self.box = nn.Conv2d(32, 4, 1)
        self.score = nn.Conv2d(32, 2, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(images)
        return self.box(features), self.score(features).softmax(1)[:, 1]


class _RefineNet(nn.Module):
    """R-Net (24x24 crops) and O-Net (48x48 crops, with landmarks): convolutions, then dense layers."""

    def __init__(self, body: list[nn.Module], flat: int, width: int, landmarks: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.dense = nn.Sequential(nn.Linear(flat, width), nn.PReLU(width))
        self.box = nn.Linear(width, 4)
        self.landmarks = nn.Linear(width, 10) if landmarks else None
        self.score = nn.Linear(width, 2)

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        # the weights were trained on (N, W, H, C)-ordered features (the original Caffe model's layout)
        features = self.dense(self.body(crops).permute(0, 3, 2, 1).flatten(1))
        landmarks = self.landmarks(features) if self.landmarks is not None else None
        return self.box(features), landmarks, self.score(features).softmax(1)[:, 1]


def _rnet() -> _RefineNet:
    return _RefineNet([*_conv(3, 28, 3), nn.MaxPool2d(3, 2, ceil_mode=True), *_conv(28, 48, 3), nn.MaxPool2d(3, 2),
                       *_conv(48, 64, 2)], 576, 128, landmarks=False)


def _onet() -> _RefineNet:
    return _RefineNet([*_conv(3, 32, 3), nn.MaxPool2d(3, 2, ceil_mode=True), *_conv(32, 64, 3), nn.MaxPool2d(3, 2),
                       *_conv(64, 64, 3), nn.MaxPool2d(2, 2, ceil_mode=True), *_conv(64, 128, 2)],
                      1152, 256, landmarks=True)


def _load_keras_arrays(network: nn.Module, name: str) -> None:
    """Load the ``mtcnn`` package's ``<name>.lz4`` (Keras arrays, in layer order) into ``network``. The file is
    found through the package's installed metadata: importing ``mtcnn`` itself would import TensorFlow."""
    import joblib

    try:
        path = Path(importlib.metadata.distribution("mtcnn").locate_file(f"mtcnn/assets/weights/{name}.lz4"))
    except importlib.metadata.PackageNotFoundError:
        raise SettingError("face detection needs the MTCNN weights the 'mtcnn' package ships: "
                           "pip install 'mobilenet-suite[faces]'") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed 'mtcnn' package lacks its weights; reinstall it")
    arrays = [torch.from_numpy(array.copy()) for array in joblib.load(path)]
    targets = list(network.parameters())  # the modules are declared in the file's order: box, landmarks, score
    if len(arrays) != len(targets):
        raise ValueError(f"mtcnn {name}.lz4 holds {len(arrays)} arrays, the network has {len(targets)} tensors")
    with torch.no_grad():
        for target, array in zip(targets, arrays):
            if array.ndim == 4:  # conv kernel: (kh, kw, in, out) -> (out, in, kh, kw)
                array = array.permute(3, 2, 0, 1)
            elif array.ndim == 2:  # dense: (in, out) -> (out, in)
                array = array.t()
            target.copy_(array.reshape(target.shape))


class FaceDetector:
    """MTCNN: the faces in an image, with boxes, scores and five landmarks.

    Args:
        min_face_size: the smallest face side, in pixels, the image pyramid looks for.
        thresholds: P-Net, R-Net and O-Net score thresholds (FaceNet's alignment script: 0.6, 0.7, 0.7).
        scale_factor: the pyramid's step between scales.
    """

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709) -> None:
        if min_face_size < 12 or not 0 < scale_factor < 1 or not all(0 <= t < 1 for t in thresholds):
            raise ValueError("face detector: need min_face_size >= 12, 0 < scale_factor < 1 and thresholds in [0, 1);"
                             f" got {min_face_size}, {scale_factor}, {thresholds}")
        self.min_face_size, self.thresholds, self.scale_factor = min_face_size, tuple(thresholds), scale_factor
        self.pnet, self.rnet, self.onet = _PNet().eval(), _rnet().eval(), _onet().eval()
        for network, name in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            _load_keras_arrays(network, name)

    @torch.no_grad()
    def detect(self, image: Tensor) -> list[Face]:
        """Faces in a ``(3, H, W)`` RGB image (uint8, or float in 0..255), best score first."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"face detector: expected a (3, H, W) RGB image, got shape {tuple(image.shape)}")
        normalized = (image.float()[None] - 127.5) / 128  # MTCNN's input scaling
        boxes = self._propose(normalized)
        boxes = self._refine(normalized, boxes, self.rnet, 24, self.thresholds[1])[0]
        boxes, landmarks = self._refine(normalized, boxes, self.onet, 48, self.thresholds[2])
        keep = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        boxes, landmarks = boxes[keep], landmarks[keep]
        return [Face(tuple(box[:4].tolist()), float(box[4]), tuple(map(tuple, points.tolist())))
                for box, points in zip(boxes, landmarks)]

    def _scales(self, height: int, width: int) -> list[float]:
        scale, scales = 12 / self.min_face_size, []
        while min(height, width) * scale >= 12:
            scales.append(scale)
            scale *= self.scale_factor
        return scales

    def _propose(self, image: Tensor) -> Tensor:
        """P-Net over the pyramid: square candidate boxes ``(N, 5)`` (x1, y1, x2, y2, score), whole pixels."""
        height, width = image.shape[-2:]
        found = []
        for scale in self._scales(height, width):
            resized = F.interpolate(image, size=(math.ceil(height * scale), math.ceil(width * scale)), mode="area")
            offsets, scores = self.pnet(resized)
            ys, xs = torch.nonzero(scores[0] > self.thresholds[0], as_tuple=True)
            if not len(ys):
                continue
            cells = torch.stack([xs, ys, xs, ys], 1).float() * 2 + torch.tensor([1.0, 1.0, 12.0, 12.0])
            boxes = torch.floor(cells / scale)  # each output cell's 12x12 window, in image pixels
            candidates = torch.cat([boxes, scores[0, ys, xs, None], offsets[0, :, ys, xs].t()], 1)
            found.append(candidates[nms(candidates[:, :4], candidates[:, 4], 0.5)])
        if not found:
            return torch.zeros((0, 5))
        candidates = torch.cat(found)
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
        sides = (candidates[:, 2:4] - candidates[:, 0:2]).repeat(1, 2)
        boxes = candidates[:, :4] + candidates[:, 5:9] * sides
        return torch.cat([_square(boxes).floor(), candidates[:, 4:5]], 1)

    def _refine(self, image: Tensor, boxes: Tensor, network: _RefineNet, size: int,
                threshold: float) -> tuple[Tensor, Tensor]:
        """Re-score ``boxes`` with R-Net or O-Net on ``size`` crops; keep those above ``threshold``, move them by
        the net's offsets and (R-Net) square them again. Returns the boxes and O-Net's landmarks ``(N, 5, 2)``."""
        if not len(boxes):
            return torch.zeros((0, 5)), torch.zeros((0, 5, 2))
        # each box spans whole pixels x1..x2 inclusive; outside the image counts as zero (mean grey after scaling)
        regions = torch.cat([torch.zeros(len(boxes), 1), boxes[:, :2], boxes[:, 2:4] + 1], 1)
        crops = roi_align(image, regions, output_size=size, sampling_ratio=2, aligned=False)
        offsets, landmarks, scores = network(crops)
        keep = scores > threshold
        boxes, offsets, scores = boxes[keep], offsets[keep], scores[keep]
        sides = (boxes[:, 2:4] - boxes[:, 0:2] + 1).repeat(1, 2)
        points = torch.zeros((len(boxes), 5, 2))
        if landmarks is not None:
            landmarks = landmarks[keep]
            points = torch.stack([landmarks[:, :5], landmarks[:, 5:]], 2) * sides[:, None, :2] + boxes[:, None, :2] - 1
        moved = boxes[:, :4] + offsets * sides
        if landmarks is None:
            keep = nms(moved, scores, 0.7)
            return torch.cat([_square(moved[keep]).floor(), scores[keep, None]], 1), points[keep]
        return torch.cat([moved, scores[:, None]], 1), points


def _square(boxes: Tensor) -> Tensor:
    """Each box grown to a square on its longer side, about the same centre."""
    sides = (boxes[:, 2:4] - boxes[:, 0:2])
    longest = sides.max(1, keepdim=True).values
    corner = boxes[:, 0:2] + sides / 2 - longest / 2
    return torch.cat([corner, corner + longest], 1)


def _nms_min(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """NMS with overlap over the smaller box (MTCNN's last step: drops a box mostly inside a better one).

    Hand-written because torchvision's NMS measures intersection over union only."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    top_left = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left + 1).clamp(min=0).prod(-1)
    areas = box_area(boxes + torch.tensor([0.0, 0.0, 1.0, 1.0]))
    overlap = inter / torch.min(areas[:, None], areas[None, :])
    kept: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= overlap[i] > threshold
    return order[torch.tensor(kept, dtype=torch.int64)]
