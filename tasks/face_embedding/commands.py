"""The face embedding package's subcommands: ``verify`` (1:1), ``gallery build`` and ``identify`` (1:N against a
gallery). ``--align`` finds and aligns the face in each photo first (MTCNN, ``mobilenets.tasks.faces``); without
it images are taken as face crops. Imports nothing heavy until a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mobilenets.tasks.faces.commands import alignment_arguments, alignment_from

__all__ = ["add_commands"]


class _Embedder:
    """A face_embedding checkpoint embedding photos, aligning them first where asked."""

    def __init__(self, checkpoint: str, args: argparse.Namespace) -> None:
        from mobilenets.tasks.faces.alignment import FaceAligner
        from mobilenets.tasks.face_embedding import FaceEmbeddingTask

        self.task = FaceEmbeddingTask.load_from_checkpoint(checkpoint, map_location="cpu").eval()
        self.alignment = alignment_from(args) if args.align else None
        self.aligner = FaceAligner(self.alignment) if args.align else None

    def images(self, paths: list[Path], sources: list[str]) -> tuple[list[Any], list[int]]:
        """The images to embed (aligned crops with ``--align``) and the indices of those without a face."""
        import numpy as np
        import torch

        from mobilenets.tasks.faces.alignment import read_photo
        from mobilenets.tasks.data.images import read_image

        images, faceless = [], []
        for index, (path, source) in enumerate(zip(paths, sources)):
            if self.aligner is None:
                images.append(read_image(path, source))
                continue
            found = self.aligner.main_crop(read_photo(path, source))
            if found is None:
                faceless.append(index)
            else:
                images.append(torch.from_numpy(np.array(found[0])).permute(2, 0, 1))
        return images, faceless

    def embed(self, images: list[Any]) -> Any:
        import numpy as np

        batches = [self.task.embed(images[start:start + 64]) for start in range(0, len(images), 64)]
        return np.concatenate(batches) if batches else np.zeros((0, self.task.hparams.embedding_dim))


def run_verify(args: argparse.Namespace) -> int:
    from mobilenets.core.errors import BadRecordError
    from mobilenets.tasks.face_embedding.metrics import squared_distances

    embedder = _Embedder(args.ckpt, args)
    paths = [Path(args.image_a), Path(args.image_b)]
    images, faceless = embedder.images(paths, ["command line", "command line"])
    if faceless:
        raise BadRecordError(f"{paths[faceless[0]]}: no face found; check the photo or lower --min-face-size")
    embeddings = embedder.embed(images)
    distance = float(squared_distances(embeddings[:1], embeddings[1:])[0])
    threshold = embedder.task.verification_threshold if args.threshold is None else args.threshold
    verdict = "same person" if distance < threshold else "different people"
    print(f"squared distance {distance:.4f}, threshold {threshold:.4f}: {verdict}")
    return 0


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="face verification of two images with a face_embedding checkpoint")
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    parser.add_argument("--ckpt", required=True, help="a FaceEmbeddingTask checkpoint")
    parser.add_argument("--threshold", type=float, help="squared-distance threshold (default: the checkpoint's, "
                        "chosen on the verification pairs in its last evaluation)")
    parser.add_argument("--align", action="store_true", help="find and align each photo's face first (MTCNN)")
    alignment_arguments(parser)
    parser.set_defaults(handler=run_verify)


def run_gallery_build(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mobilenets.tasks.face_embedding.data import read_identity_folders
    from mobilenets.tasks.face_embedding.gallery import Gallery, file_sha256

    records, names = read_identity_folders(Path(args.images))
    embedder = _Embedder(args.ckpt, args)
    images, faceless = embedder.images([r.path for r in records], [r.source for r in records])
    kept = [r for i, r in enumerate(records) if i not in set(faceless)]
    gallery = Gallery.enrol(
        embedder.embed(images), [names[r.label] for r in kept], [str(r.path) for r in kept], args.per_image,
        checkpoint=str(args.ckpt), checkpoint_sha256=file_sha256(args.ckpt),
        threshold=float(embedder.task.verification_threshold),
        alignment=asdict(embedder.alignment) if embedder.alignment else None,
        no_face=tuple(str(records[i].path) for i in faceless))
    gallery.save(args.output)
    print(f"{len(gallery.identities)} templates ({'one per image' if args.per_image else 'one per identity'}) of "
          f"{len(set(gallery.identities))} identities from {len(kept)} images written to {args.output}"
          + (f"; {len(faceless)} images without a face left out: {list(gallery.no_face)[:5]}" if faceless else ""))
    return 0


def _add_gallery(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gallery", help="enrol identity folders into a face gallery for identify")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="embed DIR/<identity>/<image> and write a gallery file")
    build.add_argument("--ckpt", required=True, help="a FaceEmbeddingTask checkpoint")
    build.add_argument("--images", required=True, help="identity folders: DIR/<identity>/<image>")
    build.add_argument("--output", required=True, help="the gallery file to write (.npz)")
    build.add_argument("--per-image", action="store_true",
                       help="one template per image (default: the mean embedding per identity)")
    build.add_argument("--align", action="store_true", help="find and align each photo's face first (MTCNN)")
    alignment_arguments(build)
    build.set_defaults(handler=run_gallery_build)


def run_identify(args: argparse.Namespace) -> int:
    from mobilenets.tasks.face_embedding.gallery import Gallery

    gallery = Gallery.load(args.gallery)
    checkpoint = args.ckpt or gallery.checkpoint
    gallery.check_checkpoint(checkpoint, args.gallery)
    if gallery.alignment is not None and not args.align:  # the probes are cut as the gallery's photos were
        args.align = True
        for key, value in gallery.alignment.items():
            setattr(args, key, value)
    embedder = _Embedder(checkpoint, args)
    paths = [Path(image) for image in args.images]
    images, faceless = embedder.images(paths, ["command line"] * len(paths))
    matches = iter(gallery.search(embedder.embed(images), args.top_k))
    threshold = gallery.threshold if args.threshold is None else args.threshold
    results = []
    for index, path in enumerate(paths):
        if index in faceless:
            results.append({"image": str(path), "identity": None, "verdict": "no face found", "matches": []})
            continue
        found = next(matches)
        known = found[0].distance < threshold
        results.append({"image": str(path), "identity": found[0].identity if known else "unknown",
                        "verdict": "known" if known else "unknown", "threshold": threshold,
                        "matches": [{"identity": m.identity, "distance": round(m.distance, 4)} for m in found]})
    if args.format == "json":
        print(json.dumps(results, indent=1))
        return 0
    for result in results:
        nearest = ", ".join(f"{m['identity']} {m['distance']:.4f}" for m in result["matches"])
        print(f"{result['image']}: {result['identity'] or result['verdict']}"
              + (f" (threshold {threshold:.4f}; nearest: {nearest})" if result["matches"] else ""))
    return 0


def _add_identify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("identify", help="nearest identities of face photos in a gallery (1:N)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--gallery", required=True, help="a file written by mobilenets gallery build")
    parser.add_argument("--ckpt", help="the checkpoint (default: the one the gallery records; another is refused)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threshold", type=float,
                        help="squared distance below which the nearest identity is accepted (default: the "
                        "checkpoint's verification threshold, recorded in the gallery); above it: unknown")
    parser.add_argument("--align", action="store_true",
                        help="find and align each photo's face first (default: as the gallery was built)")
    alignment_arguments(parser)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run_identify)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """``mobilenets verify``, ``gallery build`` and ``identify``."""
    _add_verify(subparsers)
    _add_gallery(subparsers)
    _add_identify(subparsers)
