"""WebDataset tar shards: the format large image datasets ship in, written from any of the suite's datasets and
streamed for training.

A million geotagged photos as files means a million small files, and a listing of them all in memory before the
first step. As shards they are a few hundred sequential tar reads: training starts after reading
``<split>.json`` (the sample count), and each worker streams its own shards. ``mobilenets shards`` writes them:
one ``<key>.<ext>`` (the image's own bytes, not re-encoded) and ``<key>.json`` (label, source record, index) per
sample, ``maxcount`` samples per ``<split>-NNNNNN.tar``. A data module given ``shards: DIR`` trains from
``DIR/train-*.tar`` and evaluates from its usual files.

The ``webdataset`` library does the tar reading, shard shuffling and splitting over workers and processes; what
is written here is the suite's sample format and the bridge to its transforms and labels.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torchvision.transforms import v2

from mobilenets.core.io import write_text
from mobilenets.tasks.data.images import BadRecordError, ImageDataset, decode_image_file

__all__ = ["ShardedImages", "write_shards"]

log = logging.getLogger(__name__)


def _json_label(label: Any) -> Any:
    return [float(v) for v in label] if isinstance(label, (tuple, list)) else label


def write_shards(datamodule: Any, output: str | Path, splits: tuple[str, ...] = ("train", "val", "test"),
                 maxcount: int = 1000) -> dict[str, int]:
    """Write a data module's splits as shards under ``output``; returns the samples written per split.

    Each split also gets ``<split>.json``: its sample count, shard names and the data module's label names, which
    is all a reader needs before streaming.
    """
    import webdataset as wds

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    datamodule.prepare_data()
    datamodule.setup("fit")
    counts = {}
    for split in splits:
        dataset = datamodule.datasets[split]
        if not isinstance(dataset, ImageDataset):
            raise ValueError(f"{type(datamodule).__name__}: the {split} split is a {type(dataset).__name__}; shards "
                             f"are written from image-and-label datasets (classification, face attributes, face "
                             f"embedding, geolocation)")
        pattern = str(output / f"{split}-%06d.tar")
        with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0) as writer:
            for index, record in enumerate(dataset.records):
                path = Path(record.path)
                writer.write({"__key__": f"{index:09d}", path.suffix.lower().lstrip("."): path.read_bytes(),
                              "json": {"label": _json_label(record.label), "source": record.source,
                                       "file": path.name, "index": index}})
        counts[split] = len(dataset.records)
        names = sorted(p.name for p in output.glob(f"{split}-*.tar"))
        # written last: a shard set without its index is incomplete
        write_text(output / f"{split}.json", json.dumps({"samples": counts[split], "shards": names}))
    return counts


class ShardedImages(torch.utils.data.IterableDataset):
    """A split's shards as a stream of the same samples ``ImageDataset`` gives (``image``, ``label``, ``index``,
    ``file``), shuffled within a buffer, each loader worker and each DDP process reading its own shards.

    Args:
        folder: where ``mobilenets shards`` wrote ``<split>-*.tar`` and ``<split>.json``.
        split: which split to stream.
        transform: the image transform (the data module's training augmentation).
        label: maps a sample's stored label to the training label (geolocation recomputes its S2 cells from the
            coordinates with the current partition); returning None leaves the sample out.
        shuffle_buffer: samples shuffled together (0: the stored order).
        skip_bad: skip (and log) undecodable images instead of raising.
    """

    def __init__(self, folder: str | Path, split: str, transform: v2.Transform,
                 label: Callable[[Any], Any] = lambda stored: stored, shuffle_buffer: int = 1000,
                 skip_bad: bool = False) -> None:
        super().__init__()
        self.folder, self.split = Path(folder), split
        index_file = self.folder / f"{split}.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"{index_file} not found: write the shards with `mobilenets shards` (it writes "
                                    f"this index last, so its absence also means an unfinished shard set)")
        index = json.loads(index_file.read_text())
        self.samples, self.urls = int(index["samples"]), [str(self.folder / name) for name in index["shards"]]
        missing = [url for url in self.urls if not Path(url).is_file()]
        if missing:
            raise FileNotFoundError(f"{index_file} lists shards that are not there: {missing[:3]}")
        self.transform, self.label, self.shuffle_buffer = transform, label, shuffle_buffer
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        """The split's sample count (a DDP process streams about its share of it)."""
        return self.samples

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        meta = json.loads(sample["json"])
        where = f"{sample['__url__']}:{sample['__key__']} ({meta.get('source')})"
        image_key = next((k for k in sample if k in ("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff")), None)
        try:
            if image_key is None:
                raise OSError("no image in the sample")
            pixels = decode_image_file(sample[image_key])
        except (OSError, ValueError) as error:
            if not self.skip_bad:
                raise BadRecordError(f"{where}: unreadable image: {error}") from None
            log.warning("skip_bad: skipped %s: unreadable image", where)
            return None
        label = self.label(meta["label"])
        if label is None:
            return None
        return {"image": self.transform(pixels), "label": torch.as_tensor(label), "index": meta["index"],
                "file": meta["file"]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """One pass. The shuffling seeds come from torch's generator when the epoch's loader starts (workers get
        theirs from it), so every epoch differs, a seeded run repeats, and a resumed run continues exactly."""
        import webdataset as wds

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        seed = info.seed if info is not None else int(torch.empty((), dtype=torch.int64).random_().item())
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1
        if distributed:  # shards drawn with replacement: the same number of samples in every process
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            stream = wds.WebDataset(self.urls, resampled=True, seed=seed + 7919 * rank, nodesplitter=None,
                                    empty_check=False).with_epoch(self.samples // world // workers)
        else:  # each worker its own shards, each once
            stream = wds.WebDataset(self.urls, shardshuffle=len(self.urls) if self.shuffle_buffer else False,
                                    seed=seed, empty_check=False)
        if self.shuffle_buffer:
            stream = stream.shuffle(self.shuffle_buffer, rng=random.Random(seed + worker))
        for sample in stream:
            decoded = self._decode(sample)
            if decoded is not None:
                yield decoded
