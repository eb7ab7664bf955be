"""Image records and their decoding, with errors that name the record; the shared transforms; the dataset over
records that every task's data module builds its splits from."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension, make_dataset
from torchvision.transforms import v2

from mobilenets.core.errors import BadRecordError

__all__ = ["SYSTEM_NAMES", "BadRecordError", "ImageDataset", "ImageRecord", "class_folder_samples", "decode_image_file",
           "decode_with_pil", "decode_with_torchcodec", "drop_unreadable", "five_crop_transform", "image_files",
           "is_hidden", "read_image", "record_errors", "visible_folders"]

log = logging.getLogger(__name__)

#: What operating systems, file managers, NAS boxes and notebooks leave in a folder tree (besides names starting with
#: a dot: ``.ipynb_checkpoints``, ``.DS_Store``, macOS's ``._photo.jpg``): never a class, never an image.
SYSTEM_NAMES = frozenset({"__MACOSX", "@eaDir", "#recycle", "@Recycle", "$RECYCLE.BIN", "System Volume Information",
                          "lost+found", "Thumbs.db", "desktop.ini"})


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden or a system's own, so that no tree walk takes it for data."""
    return name.startswith(".") or name in SYSTEM_NAMES


def visible_folders(root: str | Path) -> list[str]:
    """The names of ``root``'s sub-folders, sorted, hidden and system folders left out (torchvision's
    ``find_classes`` takes them all, so ``.ipynb_checkpoints`` would become a class)."""
    with os.scandir(root) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not is_hidden(entry.name))


def image_files(root: str | Path, recursive: bool = True) -> list[Path]:
    """The image files under ``root`` (torchvision's ``IMG_EXTENSIONS``, any case), sorted; hidden and system
    folders and files are left out."""
    found = []
    for folder, folders, files in os.walk(root, followlinks=True):
        folders[:] = [name for name in folders if not is_hidden(name)] if recursive else []
        found += [Path(folder, name) for name in files
                  if not is_hidden(name) and has_file_allowed_extension(name, IMG_EXTENSIONS)]
    return sorted(found)


def class_folder_samples(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """torchvision's ImageFolder listing of ``root/<class>/**/<image>`` (its class indices and order), without
    hidden or system folders and files: (class names, [(image, class index)])."""
    root = Path(root)
    classes = visible_folders(root)

    def visible_image(path: str) -> bool:
        return has_file_allowed_extension(path, IMG_EXTENSIONS) and not any(
            is_hidden(part) for part in Path(path).relative_to(root).parts)

    samples = make_dataset(str(root), {name: index for index, name in enumerate(classes)},
                           is_valid_file=visible_image, allow_empty=True)
    return classes, [(Path(path), index) for path, index in samples]


@dataclass(frozen=True)
class ImageRecord:
    """One image and its label (a class index, an attribute vector, ...); ``source`` says where it was listed."""

    path: Path
    label: Any
    source: str
    box: tuple[int, int, int, int] | None = None


def decode_with_pil(source: Path | bytes) -> torch.Tensor:
    """An image file (or its bytes) as RGB uint8 (C, H, W), upright by its EXIF orientation (phone photos store the
    sensor's rotation there), decoded by PIL: every format PIL reads."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return v2.functional.pil_to_tensor(ImageOps.exif_transpose(image).convert("RGB"))


def decode_with_torchcodec(source: Path | bytes) -> torch.Tensor:
    """JPEG, PNG, WebP, GIF, AVIF or HEIC as RGB uint8 (C, H, W), upright by EXIF orientation, decoded by TorchCodec
    (libjpeg-turbo for JPEG): the same pixels as PIL, about 1.4x as fast per core (``mobilenets bench data``);
    CMYK and grey become RGB."""
    from torchcodec.decoders import decode_image

    return decode_image(source if isinstance(source, bytes) else str(source), mode="RGB")


def decode_image_file(source: Path | bytes) -> torch.Tensor:
    """RGB uint8 (C, H, W), upright (either decoder applies the EXIF orientation): TorchCodec, the faster decoder,
    for the formats it reads; PIL for the others (BMP, TIFF...) and wherever TorchCodec cannot be imported. Raises
    PIL's error when neither can decode it."""
    if _TORCHCODEC:
        try:
            return decode_with_torchcodec(source)
        except (RuntimeError, ValueError):  # another format, or a damaged file: PIL reads or names the problem
            pass
    return decode_with_pil(source)


def _torchcodec_importable() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError) as error:  # not installed, or built for another torch
        log.info("TorchCodec unavailable (%s): decoding images with PIL", error)
        return False
    return True


_TORCHCODEC = _torchcodec_importable()


def read_image(path: Path, source: str) -> torch.Tensor:
    """Decode an image as an RGB uint8 (C, H, W) tensor (``decode_image_file``), or raise naming the file and
    where it was listed."""
    try:
        return decode_image_file(path)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadRecordError(f"{path} ({source}): unreadable image: {error}") from None


@contextlib.contextmanager
def record_errors(skipped: list[str], skip_bad: bool) -> Iterator[None]:
    """One record's reading: a ``BadRecordError`` inside raises, or with ``skip_bad`` is counted in ``skipped`` (the
    record left out) and reading goes on."""
    try:
        yield
    except BadRecordError as error:
        if not skip_bad:
            raise
        skipped.append(str(error))


def drop_unreadable(records: list[ImageRecord]) -> tuple[list[ImageRecord], list[str]]:
    """Decode every image once; keep the readable ones (for ``skip_bad``: bad files counted, not crashed on)."""
    kept, skipped = [], []
    for record in records:
        with record_errors(skipped, skip_bad=True):
            read_image(record.path, record.source)
            kept.append(record)
    return kept, skipped


class _StackCrops(torch.nn.Module):
    """FiveCrop's tuple of crops as one (crops, C, H, W) tensor (a class, so loader workers can pickle it)."""

    def forward(self, crops: tuple) -> torch.Tensor:
        return torch.stack([crop.as_subclass(torch.Tensor) for crop in crops])


def five_crop_transform(resolution: int, crop_fraction: float = 0.875) -> v2.Transform:
    """Test-time augmentation: resize the short side to resolution / crop_fraction, then the four corner and the
    central resolution x resolution crops, stacked as (5, C, H, W)."""
    return v2.Compose([
        v2.Resize(round(resolution / crop_fraction), antialias=True),
        v2.FiveCrop(resolution),
        v2.ToDtype(torch.float32, scale=True),
        _StackCrops(),
    ])


class ImageDataset(Dataset):
    """Images in [0, 1] with their labels: ``{"image", "label", "file", "index"}``; normalisation is the model's."""

    def __init__(self, records: list[ImageRecord], transform: v2.Transform | None = None) -> None:
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def split(self, keep: list[int]) -> tuple[ImageDataset, list[ImageRecord]]:
        """The records at ``keep`` as a dataset, and the others without their labels."""
        kept = set(keep)
        dropped = [replace(r, label=-1) for i, r in enumerate(self.records) if i not in kept]
        return ImageDataset([self.records[i] for i in keep], self.transform), dropped

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = read_image(record.path, record.source)
        if record.box is not None:
            x0, y0, x1, y1 = record.box
            image = image[:, y0:y1, x0:x1]
        image = tv_tensors.Image(image)
        if self.transform is not None:
            image = self.transform(image)
        label = record.label
        if isinstance(label, (list, tuple, np.ndarray)):
            label = torch.as_tensor(np.asarray(label))
        return {"image": image.as_subclass(torch.Tensor), "label": label, "file": str(record.path), "index": index}
