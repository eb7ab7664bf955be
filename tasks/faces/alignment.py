"""Face alignment: the detected face cut out of an ordinary photo, as the face tasks expect it.

Two crops, as the face-recognition tools users know make them: ``similarity`` warps the five landmarks onto a
canonical template (ArcFace/InsightFace's, the literature's usual one) with a similarity transform (scikit-image's
least-squares estimate); ``box`` cuts MTCNN's box grown by a margin and resizes it (FaceNet's
``align_dataset_mtcnn.py``). ``align_tree`` aligns a folder tree; ``AlignedFaces`` keeps crops cached beside a
dataset for the data modules' ``align: true``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from mobilenets.core.io import write_bytes, write_text
from mobilenets.tasks.faces.detection import LANDMARK_NAMES, Face, FaceDetector
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, image_files, read_image, record_errors

__all__ = ["TEMPLATE_112", "AlignedFaces", "AlignsFaces", "Alignment", "AlignmentSummary", "FaceAligner", "align_tree",
           "draw_faces", "main_face", "read_photo"]

#: ArcFace's five-point template (eyes, nose tip, mouth corners) for a 112 x 112 crop, in LANDMARK_NAMES order
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]])


@dataclass(frozen=True)
class Alignment:
    """How faces are found and cropped.

    Args:
        size: the crop's side in pixels (FaceNet's 160).
        margin: pixels of context around the face, in total over both sides: ``box`` grows MTCNN's box by
            margin / 2 on each side (in the photo's pixels, FaceNet's 32); ``similarity`` fits the template into
            ``size - margin`` pixels, centred.
        method: ``similarity`` (five landmarks onto the template) or ``box`` (box plus margin, resized square).
        min_face_size: the detector's smallest face side, in the photo's pixels.
    """

    size: int = 160
    margin: int = 32
    method: Literal["similarity", "box"] = "similarity"
    min_face_size: int = 20

    def __post_init__(self) -> None:
        if self.method not in ("similarity", "box"):
            raise ValueError(f"alignment method must be 'similarity' or 'box', got {self.method!r}")
        if self.size < 16 or not 0 <= self.margin < self.size:
            raise ValueError(f"alignment: need size >= 16 and 0 <= margin < size, got {self.size} and {self.margin}")

    @classmethod
    def of(cls, value: Alignment | dict | None) -> Alignment:
        """An ``Alignment`` from itself, a dict of its fields (YAML) or None (the defaults)."""
        if value is None:
            return cls()
        return value if isinstance(value, Alignment) else cls(**value)

    @property
    def key(self) -> str:
        """A folder name that changes whenever the crops would."""
        return f"{self.method}-{self.size}-m{self.margin}-min{self.min_face_size}"

    def template(self) -> np.ndarray:
        """The five landmarks' places in the crop."""
        return TEMPLATE_112 / 112 * (self.size - self.margin) + self.margin / 2

    def crop(self, image: Image.Image, face: Face) -> Image.Image:
        """``face`` cut out of ``image`` as a ``size`` x ``size`` RGB crop."""
        if self.method == "box":
            x1, y1, x2, y2 = face.box
            half = self.margin / 2
            box = (max(x1 - half, 0), max(y1 - half, 0), min(x2 + half, image.width), min(y2 + half, image.height))
            return image.crop(tuple(round(v) for v in box)).resize((self.size, self.size), Image.BILINEAR)
        from skimage.transform import SimilarityTransform

        transform = SimilarityTransform.from_estimate(np.asarray(face.landmarks), self.template())
        if not transform:
            raise BadRecordError(f"the landmarks {face.landmarks} admit no similarity transform")
        inverse = np.linalg.inv(transform.params)[:2].ravel()  # PIL maps output pixels back into the photo
        return image.transform((self.size, self.size), Image.AFFINE, tuple(inverse), Image.BILINEAR)


def main_face(faces: list[Face], width: int, height: int) -> Face:
    """The face a single-face crop keeps: the largest, less twice its centre's squared offset from the image's
    centre (FaceNet's ``align_dataset_mtcnn.py`` rule), so a big face near the middle wins."""
    def merit(face: Face) -> float:
        x1, y1, x2, y2 = face.box
        return face.size - 2 * (((x1 + x2) / 2 - width / 2) ** 2 + ((y1 + y2) / 2 - height / 2) ** 2)
    return max(faces, key=merit)


class FaceAligner:
    """Photos' faces as aligned crops, one photo at a time (``verify``, ``identify``, the gallery, the cache)."""

    def __init__(self, alignment: Alignment = Alignment()) -> None:
        self.alignment = alignment
        self.detector = FaceDetector(min_face_size=alignment.min_face_size)

    def faces(self, image: Image.Image) -> list[Face]:
        """Every face MTCNN finds in an RGB photo, best score first."""
        import torch

        return self.detector.detect(torch.from_numpy(np.array(image)).permute(2, 0, 1))

    def main_crop(self, image: Image.Image) -> tuple[Image.Image, Face] | None:
        """The crop of the photo's main face (``main_face``) and the face; None where no face is found."""
        faces = self.faces(image)
        if not faces:
            return None
        face = main_face(faces, image.width, image.height)
        return self.alignment.crop(image, face), face


def _encode(image: Image.Image, suffix: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if suffix.lower() in (".jpg", ".jpeg") else "PNG", quality=95)
    return buffer.getvalue()


def read_photo(path: Path, source: str) -> Image.Image:
    """An image file as an RGB PIL image (the suite's decoding: an unreadable file names ``source``)."""
    return Image.fromarray(read_image(path, source).permute(1, 2, 0).numpy())


@dataclass
class AlignmentSummary:
    """What ``align_tree`` did: images read, crops written, and the images without a face or unreadable."""

    images: int = 0
    crops: int = 0
    no_face: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


CSV_FIELDS = ["source", "crop", "face", "score", "x1", "y1", "x2", "y2",
              *[f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]]


def draw_faces(image: Image.Image, faces: list[Face], kept: list[Face]) -> Image.Image:
    """A copy of the photo with each face's box (green where cropped, grey where not), score and landmarks."""
    from PIL import ImageDraw

    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    width = max(2, round(min(image.size) / 200))
    for face in faces:
        colour = (0, 220, 0) if face in kept else (160, 160, 160)
        pen.rectangle(face.box, outline=colour, width=width)
        pen.text((face.box[0], face.box[1] - 12), f"{face.score:.2f}", fill=colour)
        for (x, y), dot in zip(face.landmarks, [(255, 0, 0), (255, 0, 0), (255, 255, 0), (0, 160, 255), (0, 160, 255)]):
            pen.ellipse((x - width * 1.5, y - width * 1.5, x + width * 1.5, y + width * 1.5), fill=dot)
    return drawn


def align_tree(source: Path, destination: Path, alignment: Alignment = Alignment(), all_faces: bool = False,
               skip_bad: bool = False, draw: Path | None = None) -> AlignmentSummary:
    """Align every image under ``source`` into the same tree under ``destination``.

    One crop per image (``main_face``), or with ``all_faces`` one per face (``<stem>_<k><suffix>``). Writes
    ``faces.csv`` (source, crop, face index, score, box, landmarks) and ``no_face.txt`` (the images where no face
    was found, one relative path per line). An unreadable image is an error naming it, or with ``skip_bad``
    is skipped and counted. ``draw``: a folder for each photo with its faces drawn (``draw_faces``), as PNG.
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder to align")
    files = [path for path in image_files(source) if destination not in path.parents]
    if not files:
        raise BadRecordError(f"{source}: no images found (looked for {', '.join(IMG_EXTENSIONS)})")
    aligner = FaceAligner(alignment)
    summary, rows = AlignmentSummary(), []
    for path in files:
        relative = path.relative_to(source)
        with record_errors(summary.skipped, skip_bad):
            image = read_photo(path, str(relative))
            summary.images += 1
            faces = aligner.faces(image)
            if not faces:
                summary.no_face.append(relative.as_posix())
                continue
            chosen = faces if all_faces else [main_face(faces, image.width, image.height)]
            if draw is not None:
                write_bytes((draw / relative).with_suffix(".png"), _encode(draw_faces(image, faces, chosen), ".png"))
            for k, face in enumerate(chosen):
                name = relative.with_name(f"{relative.stem}_{k}{relative.suffix}") if all_faces else relative
                write_bytes(destination / name, _encode(alignment.crop(image, face), relative.suffix))
                summary.crops += 1
                rows.append({"source": relative.as_posix(), "crop": name.as_posix(), "face": k,
                             "score": round(face.score, 5), **dict(zip(CSV_FIELDS[4:8], _rounded(face.box))),
                             **dict(zip(CSV_FIELDS[8:], _rounded(np.ravel(face.landmarks))))})
    table = io.StringIO()
    writer = csv.DictWriter(table, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(destination / "faces.csv", table.getvalue())
    write_text(destination / "no_face.txt", "".join(f"{name}\n" for name in summary.no_face))
    return summary


def _rounded(values: Any) -> list[float]:
    return [round(float(v), 2) for v in values]


class AlignedFaces:
    """Aligned crops of a dataset's images, cached under ``<root>/.aligned/<settings>/`` beside the data.

    Each crop has a JSON note of its source file's size and modification time, and is made again when the
    source changes. Writes are atomic, so ranks of a distributed run may fill the cache at once.
    """

    def __init__(self, root: Path, alignment: Alignment) -> None:
        self.root, self.alignment = Path(root), alignment
        self.cache = self.root / ".aligned" / alignment.key
        self._aligner: FaceAligner | None = None

    def crop_of(self, path: Path, source: str) -> Path | None:
        """The aligned crop of the image at ``path`` (``source`` names its record in errors); None: no face."""
        path = Path(path)
        try:
            relative = path.resolve().relative_to(self.root.resolve())
        except ValueError:  # outside the dataset's root (predict_dir, unlabeled): keyed by its absolute path
            relative = Path("external", *path.resolve().parts[1:])
        crop, note = self.cache / relative, self.cache / f"{relative}.json"
        stat = path.stat() if path.is_file() else None
        if stat is None:
            raise BadRecordError(f"{path} ({source}): image file not found")
        stamp = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if note.is_file():
            recorded = json.loads(note.read_text())
            if recorded["source"] == stamp:
                return crop if recorded["found"] else None
        if self._aligner is None:
            self._aligner = FaceAligner(self.alignment)
        found = self._aligner.main_crop(read_photo(path, source))
        if found is not None:
            write_bytes(crop, _encode(found[0], path.suffix))
        write_text(note, json.dumps({"source": stamp, "found": found is not None,
                                     "face": asdict(found[1]) if found else None}))
        return crop if found else None

    def records(self, records: list[ImageRecord], skipped: list[str], skip_bad: bool) -> list[ImageRecord]:
        """``records`` reading their aligned crops. An image without a face is an error naming it, or with
        ``skip_bad`` is left out and counted in ``skipped``."""
        aligned = []
        for record in records:
            with record_errors(skipped, skip_bad):
                crop = self.crop_of(record.path, record.source)
                if crop is None:
                    raise BadRecordError(f"{record.path} ({record.source}): no face found to align; pass "
                                         "skip_bad: true to leave such images out, or align: false")
                aligned.append(replace(record, path=crop))
        return aligned


class AlignsFaces:
    """Data-module mixin for ``align: true``: every split's records read their cached face crops. The data module
    sets ``aligned_faces`` (an ``AlignedFaces``, or None without ``align``)."""

    aligned_faces: AlignedFaces | None = None

    def prepare_data(self) -> None:
        """Lightning's once-per-node step (local rank 0, the other ranks waiting): with ``align``, also read the
        splits, which finds every image's face and caches its crop, so that the other ranks' ``setup`` reads the
        cached crops instead of running face detection again."""
        super().prepare_data()  # type: ignore[misc]
        if self.aligned_faces is not None:
            self.setup()  # type: ignore[attr-defined]

    def located_records(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """With ``align``, each image's cached face crop."""
        if self.aligned_faces is None:
            return records
        return self.aligned_faces.records(records, self.skipped, self.hparams.skip_bad)
