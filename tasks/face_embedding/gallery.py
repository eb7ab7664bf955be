"""A gallery of enrolled faces for 1:N identification: ``mobilenets gallery build`` writes one, ``mobilenets
identify`` searches it.

A gallery file (``.npz``: the templates, plus a JSON header) records the checkpoint it was built with (its SHA-256)
and refuses another: embeddings of two models are not comparable. The "unknown" verdict uses the checkpoint's
verification threshold, chosen on its verification pairs.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.core.errors import BadRecordError, SettingError
from mobilenets.core.io import write_bytes
from mobilenets.tasks.face_embedding.metrics import enrol, nearest_templates

__all__ = ["Gallery", "Match", "file_sha256"]

FORMAT = "mobilenets-face-gallery/1"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Match:
    """One gallery entry near a probe: its identity and squared L2 distance."""

    identity: str
    distance: float


@dataclass
class Gallery:
    """Enrolled templates (unit vectors), one per identity or per image, and what they were built with.

    Attributes:
        identities: each template's identity.
        templates: ``(N, D)`` unit embeddings.
        files: the images behind each template.
        checkpoint, checkpoint_sha256: the face_embedding checkpoint that embedded them.
        threshold: that checkpoint's verification threshold (squared distance): nearer is a match.
        alignment: how the photos were aligned (``Alignment`` fields), None when read as given.
        no_face: images left out because no face was found in them.
    """

    identities: list[str]
    templates: np.ndarray
    files: list[list[str]]
    checkpoint: str
    checkpoint_sha256: str
    threshold: float
    alignment: dict[str, Any] | None = None
    no_face: tuple[str, ...] = ()

    @classmethod
    def enrol(cls, embeddings: np.ndarray, identities: list[str], files: list[str], per_image: bool,
              **details: Any) -> Gallery:
        """A gallery of one template per image (``per_image``) or one mean template per identity (``enrol``)."""
        if not len(identities):
            raise SettingError("a gallery needs at least one image with a face")
        if per_image:
            templates = np.asarray(embeddings, np.float64)
            templates = templates / np.linalg.norm(templates, axis=1, keepdims=True)
            return cls(list(identities), templates, [[file] for file in files], **details)
        names, templates = enrol(embeddings, identities)
        grouped = [[file for file, owner in zip(files, identities) if owner == name] for name in names]
        return cls(names, templates, grouped, **details)

    def save(self, path: str | Path) -> Path:
        header = {key: value for key, value in asdict(self).items() if key != "templates"}
        buffer = io.BytesIO()
        np.savez(buffer, templates=self.templates, header=np.array(json.dumps({"format": FORMAT, **header})))
        return write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        """Read a gallery file; anything else is an error naming the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: gallery file not found (build one with mobilenets gallery build)")
        try:
            with np.load(path, allow_pickle=False) as stored:
                header, templates = json.loads(str(stored["header"])), stored["templates"]
        except (ValueError, KeyError, OSError) as error:
            raise BadRecordError(f"{path}: not a gallery file written by mobilenets gallery build ({error})") from None
        if header.pop("format", None) != FORMAT:
            raise BadRecordError(f"{path}: not a {FORMAT} file; rebuild it with mobilenets gallery build")
        header["no_face"] = tuple(header.get("no_face", ()))
        return cls(templates=templates, **header)

    def check_checkpoint(self, checkpoint: str | Path, gallery_path: str | Path) -> None:
        """Refuse a checkpoint other than the one the gallery was built with."""
        if file_sha256(checkpoint) != self.checkpoint_sha256:
            raise SettingError(f"{gallery_path} was built with {self.checkpoint} (SHA-256 "
                               f"{self.checkpoint_sha256[:12]}...), not {checkpoint}: embeddings of different models "
                               "cannot be compared; rebuild the gallery with this checkpoint")

    def search(self, embeddings: np.ndarray, top_k: int = 5) -> list[list[Match]]:
        """Each probe's ``top_k`` nearest templates, nearest first."""
        order, distances = nearest_templates(embeddings, self.templates, min(top_k, len(self.identities)))
        return [[Match(self.identities[i], float(d)) for i, d in zip(row, row_distances)]
                for row, row_distances in zip(order, distances)]
