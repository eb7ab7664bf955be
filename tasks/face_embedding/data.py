"""Face embedding data: identity folders for training (P x K batches) and LFW-style pairs for verification.

Training reads ``root/<train_dir>/<identity>/<image>`` (VGGFace2, CASIA-WebFace, LFW layout). Batches hold P
identities x K images each (pytorch-metric-learning's ``MPerClassSampler``), so every batch has positives for
triplet mining. Verification reads LFW's ``pairs.txt`` (``10<TAB>300`` header, or a single-set ``300``) with
images at ``<pairs_dir>/<name>/<name>_%04d.jpg``; validation and test both evaluate on those pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import DataLoader

from mobilenets.core.io import read_text
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.faces.alignment import AlignedFaces, Alignment, AlignsFaces
from mobilenets.tasks.face_embedding.synthetic import write_faces
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, class_folder_samples, record_errors

__all__ = ["FaceIdentityDataModule", "IdentificationSet", "Pair", "PairSet", "read_identity_folders", "read_pairs"]

log = logging.getLogger(__name__)


class _ReplayableMPerClassSampler(MPerClassSampler):
    """``MPerClassSampler`` whose epoch depends on the random state alone, so a resumed fit replays it.

    pytorch-metric-learning's sampler shuffles its identity list in place, so each epoch starts from the order
    the previous one left, which a fit resumed from a checkpoint cannot know; and it draws the whole epoch when
    the loader's iterator is made, before a resumed fit puts the checkpoint's random state back. Here every epoch
    starts from the initial order and is drawn at its first batch (from numpy's random state, which checkpoints
    carry), as ``RandomSampler`` draws."""

    def __init__(self, labels: Sequence[int], **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        self._initial_labels = list(self.labels)

    def __iter__(self) -> Iterator[int]:
        self.labels = list(self._initial_labels)
        yield from super().__iter__()


@dataclass(frozen=True)
class PairSet:
    """A pairs file's pairs, and each pair's two image indices (labels) in its evaluation dataset."""

    pairs: list[Pair]
    indices: list[tuple[int, int]]


@dataclass(frozen=True)
class IdentificationSet:
    """Open-set identification images: the test set's image index i < len(gallery_identities) is gallery image i,
    the others are probes in order."""

    gallery_identities: list[str]
    probe_identities: list[str]


@dataclass(frozen=True)
class Pair:
    """Two images, whether they show the same person, the fold, and the pairs.txt line."""

    first: Path
    second: Path
    same: bool
    fold: int
    source: str


def read_pairs(path: Path, image_root: Path, skip_bad: bool = False) -> tuple[list[Pair], list[str]]:
    """Parse an LFW ``pairs.txt``: matched ``name n1 n2``, mismatched ``name1 n1 name2 n2``, per fold."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pairs file not found")
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    header = lines[0].split() if lines else []
    if len(header) == 2 and all(f.isdigit() for f in header):
        folds, per_fold = int(header[0]), int(header[1])
    elif len(header) == 1 and header[0].isdigit():
        folds, per_fold = 1, int(header[0])
    else:
        raise BadRecordError(f"{path}:1: expected a header '<folds> <pairs per fold>' or '<pairs>', got {lines[:1]}")
    if len(lines) - 1 != folds * 2 * per_fold:
        raise BadRecordError(f"{path}: header announces {folds * 2 * per_fold} pairs, file has {len(lines) - 1}")

    def image(name: str, number: str, source: str) -> Path:
        if not number.isdigit():
            raise BadRecordError(f"{path}:{source}: image number {number!r} is not a number")
        file = image_root / name / f"{name}_{int(number):04d}.jpg"
        if not file.is_file():
            raise BadRecordError(f"{file} ({path.name}:{source}): image file not found")
        return file

    pairs, skipped = [], []
    for index, line in enumerate(lines[1:]):
        line_number = index + 2
        fold, same = index // (2 * per_fold), index % (2 * per_fold) < per_fold
        fields = line.split()
        with record_errors(skipped, skip_bad):
            expected = 3 if same else 4
            if len(fields) != expected:
                kind = "matched 'name n1 n2'" if same else "mismatched 'name1 n1 name2 n2'"
                raise BadRecordError(f"{path}:{line_number}: expected {expected} fields ({kind}), got {len(fields)}")
            if same:
                first, second = image(fields[0], fields[1], str(line_number)), image(fields[0], fields[2], str(line_number))
            else:
                first, second = image(fields[0], fields[1], str(line_number)), image(fields[2], fields[3], str(line_number))
            pairs.append(Pair(first, second, same, fold, f"{path.name}:{line_number}"))
    return pairs, skipped


def read_identity_folders(root: Path) -> tuple[list[ImageRecord], list[str]]:
    """Records of ``root/<identity>/<image>`` with identity indices; an identity without images is an error."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: identity folder root not found")
    identities, samples = class_folder_samples(root)
    found = {label for _, label in samples}
    empty = [name for index, name in enumerate(identities) if index not in found]
    if empty:
        raise BadRecordError(f"{root}: identity folders without any image: {empty[:10]}")
    records = [ImageRecord(path, label, f"{path.parent.name}/[{i}]") for i, (path, label) in enumerate(samples)]
    return records, identities


class FaceIdentityDataModule(AlignsFaces, BaseDataModule):
    """Identity folders for triplet training, LFW pairs for verification.

    Args:
        root: the folder holding ``train_dir``, ``pairs_dir`` and ``pairs_file``.
        train_dir, pairs_dir, pairs_file: paths relative to ``root`` (or absolute). ``pairs_file`` may list
            several pair sets (LFW's and another): validation uses the first, and each is tested on its own, its
            metrics logged as ``test/<file stem>/...``; ``pairs_dir`` is then one folder for all or one per file.
        images_per_identity: K of the P x K batches (``batch_size`` must be a multiple of it). Identities
            with fewer than K images are kept and repeated within their batch; identities with a single
            image cannot form a positive pair and are left out of training. Both are counted and logged.
        gallery_dir: identity folders of the gallery (relative to ``root`` or absolute) for open-set
            identification in ``test``: the gallery enrols one mean embedding per identity; probes of a gallery identity are
            mated, the others are impostors. Tested as a further test set, ``test/identification/...`` (rank-1
            accuracy, DIR at each FAR of the task's ``identification_fars``).
        probe_dir: identity folders of the probes, read as ``gallery_dir``.
        align: read every image (training, pairs, gallery, probes, ``predict_dir``) as its aligned face crop,
            found by MTCNN and cut as ``alignment`` says (``mobilenets.tasks.faces.alignment``), cached under
            ``root/.aligned/`` and made again when a source file changes. An image without a face is an error
            naming it, or with ``skip_bad`` is left out and counted (its pairs then drop out of the metrics).
        alignment: the crop: ``size``, ``margin``, ``method`` (``similarity`` or ``box``), ``min_face_size``.
        **kwargs: the shared data arguments, see ``BaseDataModule``.
    """

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        pairs_dir: str | list[str] = "lfw",
        pairs_file: str | list[str] = "pairs.txt",
        images_per_identity: int = 4,
        gallery_dir: str | None = None,
        probe_dir: str | None = None,
        align: bool = False,
        alignment: Alignment | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        if (gallery_dir is None) != (probe_dir is None):
            raise ValueError(f"open-set identification needs both gallery_dir and probe_dir, got {gallery_dir!r} and "
                             f"{probe_dir!r}")
        self.aligned_faces = AlignedFaces(self.root, Alignment.of(alignment)) if align else None
        if self.hparams.shards:
            raise ValueError(f"{type(self).__name__} cannot train from shards: P x K identity batches sample from the listed identities")
        if images_per_identity < 2 or self.hparams.batch_size % images_per_identity:
            raise ValueError(
                f"images_per_identity must be >= 2 and divide batch_size ({self.hparams.batch_size}), "
                f"got {images_per_identity}"
            )
        files = [pairs_file] if isinstance(pairs_file, str) else list(pairs_file)
        folders = [pairs_dir] * len(files) if isinstance(pairs_dir, str) else list(pairs_dir)
        stems = [Path(file).stem for file in files]
        if not files or len(set(stems)) < len(stems) or len(folders) != len(files):
            raise ValueError(f"pairs_file must name one or more files with distinct names, and pairs_dir one folder or "
                             f"one per file; got {pairs_file!r} and {pairs_dir!r}")
        self.pair_sources = dict(zip(stems, zip(files, folders)))
        self.identity_names: list[str] = []
        self.pair_sets: list[PairSet] = []  # in test_names order; validation uses the first
        self.identification: IdentificationSet | None = None  # the last test set, where configured

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_faces(root, **options)

    train_min_scale = 0.7  # the whole face stays in view
    eval_crop_fraction = 1.0

    def read_splits(self) -> dict[str, Any]:
        hp = self.hparams
        train, self.identity_names = read_identity_folders(self.root / hp.train_dir)
        counts: dict[int, int] = {}
        for record in train:
            counts[record.label] = counts.get(record.label, 0) + 1
        single = {label for label, count in counts.items() if count < 2}
        few = sum(1 for count in counts.values() if 2 <= count < hp.images_per_identity)
        if single:
            log.warning("%d identities have a single image and cannot form positives; left out of training", len(single))
            train = [record for record in train if record.label not in single]
        if few:
            log.warning("%d identities have fewer than %d images; their images repeat within a batch",
                        few, hp.images_per_identity)
        tests = {name: self._pair_images(file, folder) for name, (file, folder) in self.pair_sources.items()}
        first = next(iter(tests.values()))
        if hp.gallery_dir:
            if "identification" in tests:
                raise ValueError("a pairs file named 'identification' clashes with the identification test set")
            tests["identification"] = self._identification_images()
        return {"train": train, "val": first, "test": tests if len(tests) > 1 else first}

    def _pair_images(self, pairs_file: str, pairs_dir: str) -> list[ImageRecord]:
        """Read a pairs file into ``pair_sets``; its distinct images, each labelled with its index."""
        pairs, skipped = read_pairs(self.root / pairs_file, self.root / pairs_dir, self.hparams.skip_bad)
        self.skipped += skipped
        if skipped:
            log.warning("skip_bad: %d of %s's pairs were skipped; the metrics use the remaining %d",
                        len(skipped), pairs_file, len(pairs))
        index: dict[Path, int] = {}
        for pair in pairs:
            for path in (pair.first, pair.second):
                index.setdefault(path, len(index))
        self.pair_sets.append(PairSet(pairs, [(index[p.first], index[p.second]) for p in pairs]))
        return [ImageRecord(path, i, pairs_file) for path, i in index.items()]

    def _identification_images(self) -> list[ImageRecord]:
        """Gallery then probe images, each labelled with its index; ``identification`` says which is which."""
        gallery, gallery_names = read_identity_folders(self.root / self.hparams.gallery_dir)
        probes, probe_names = read_identity_folders(self.root / self.hparams.probe_dir)
        self.identification = IdentificationSet(
            gallery_identities=[gallery_names[record.label] for record in gallery],
            probe_identities=[probe_names[record.label] for record in probes])
        return [ImageRecord(record.path, index, record.source) for index, record in enumerate(gallery + probes)]

    def training_loader(self, samples: int) -> DataLoader:
        dataset = self.datasets["train"]
        labels = [record.label for record in dataset.records]
        batch_size, per_identity = self.hparams.batch_size, self.hparams.images_per_identity
        identities = len(set(labels))
        # MPerClassSampler checks this with a bare assert; say what to change instead.
        if identities * per_identity < batch_size or len(dataset) < batch_size:
            fits = min(identities * per_identity, len(dataset)) // per_identity * per_identity
            raise ValueError(
                f"{self.root}: the training set has {identities} identities ({len(dataset)} images), fewer than one "
                f"batch of {batch_size // per_identity} identities x {per_identity} images needs; lower "
                f"data.init_args.batch_size to at most {fits}")
        sampler = _ReplayableMPerClassSampler(labels, m=per_identity, batch_size=batch_size,
                                              length_before_new_iter=samples)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0,
            drop_last=True,
        )
