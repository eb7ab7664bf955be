"""Read TensorFlow checkpoints (the V2 "tensor bundle": ``<prefix>.index`` + ``<prefix>.data-NNNNN-of-NNNNN``).

Written by hand so that converting Google's released MobileNet checkpoints needs no TensorFlow install (about
1 GB): the format is small and documented in TensorFlow's ``tensor_bundle.proto`` and LevelDB's table format.
The ``.index`` file is an uncompressed LevelDB table mapping each variable name to a ``BundleEntryProto`` (dtype,
shape, shard, offset, size); the tensors are raw little-endian bytes in the data shards.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TFCheckpointReader", "is_tf_checkpoint", "tf_checkpoint_prefix"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # one compression-type byte and a CRC32C
# tensorflow/core/framework/types.proto
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}


def tf_checkpoint_prefix(path: str | Path) -> Path | None:
    """The checkpoint prefix ``path`` names (the prefix itself, its ``.index`` or a data shard), or None."""
    path = Path(path)
    name = path.name
    if name.endswith(".index"):
        prefix = path.with_name(name[: -len(".index")])
    elif ".data-" in name:
        prefix = path.with_name(name[: name.rindex(".data-")])
    else:
        prefix = path
    return prefix if is_tf_checkpoint(prefix) else None


def is_tf_checkpoint(prefix: str | Path) -> bool:
    """Whether ``<prefix>.index`` exists and ends with the LevelDB table magic number."""
    index = Path(f"{prefix}.index")
    if not index.is_file() or index.stat().st_size < _FOOTER_SIZE:
        return False
    with open(index, "rb") as file:
        file.seek(-8, 2)
        return struct.unpack("<Q", file.read(8))[0] == _TABLE_MAGIC


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _proto_fields(buffer: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as ints, length-delimited as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(buffer):
        tag, position = _varint(buffer, position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, position = _varint(buffer, position)
        elif wire_type == 2:
            length, position = _varint(buffer, position)
            value, position = buffer[position: position + length], position + length
        elif wire_type == 5:
            value, position = struct.unpack_from("<I", buffer, position)[0], position + 4
        elif wire_type == 1:
            value, position = struct.unpack_from("<Q", buffer, position)[0], position + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


@dataclass(frozen=True)
class _Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool


def _entry(value: bytes) -> _Entry:
    dtype = shard = offset = size = 0
    shape: list[int] = []
    sliced = False
    for number, field in _proto_fields(value):
        if number == 1:
            dtype = int(field)
        elif number == 2:  # TensorShapeProto: repeated Dim (field 2) with size (field 1)
            for dim_number, dim in _proto_fields(bytes(field)):
                if dim_number == 2:
                    shape.append(next((int(v) for n, v in _proto_fields(bytes(dim)) if n == 1), 0))
        elif number == 3:
            shard = int(field)
        elif number == 4:
            offset = int(field)
        elif number == 5:
            size = int(field)
        elif number == 7:
            sliced = True
    return _Entry(dtype, tuple(shape), shard, offset, size, sliced)


class TFCheckpointReader:
    """The variables of a TensorFlow V2 checkpoint, read without TensorFlow.

    Args:
        prefix: the checkpoint prefix (``.../mobilenet_v1_1.0_224.ckpt``), its ``.index`` file or a data shard.
    """

    def __init__(self, prefix: str | Path) -> None:
        found = tf_checkpoint_prefix(prefix)
        if found is None:
            raise ValueError(f"{prefix}: not a TensorFlow checkpoint (no '<prefix>.index' table next to it)")
        self.prefix = found
        self._entries: dict[str, _Entry] = {}
        self.num_shards = 1
        for key, value in self._table(Path(f"{found}.index").read_bytes()):
            if key == b"":  # BundleHeaderProto: num_shards (1), endianness (2)
                header = dict(_proto_fields(value))
                self.num_shards = int(header.get(1, 1))
                if int(header.get(2, 0)) != 0:
                    raise ValueError(f"{found}.index: big-endian checkpoints are not supported")
            else:
                self._entries[key.decode()] = _entry(value)

    def _table(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """All (key, value) records of an uncompressed LevelDB table."""
        footer = data[-_FOOTER_SIZE:]
        _, position = _varint(footer, 0)  # metaindex offset
        _, position = _varint(footer, position)  # metaindex size
        index_offset, position = _varint(footer, position)
        index_size, _ = _varint(footer, position)
        records = []
        for _, handle in self._block(data, index_offset, index_size):
            offset, position = _varint(handle, 0)
            size, _ = _varint(handle, position)
            records.extend(self._block(data, offset, size))
        return records

    def _block(self, data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
        if data[offset + size] != 0:
            raise ValueError(f"{self.prefix}.index: compressed table blocks are not supported")
        block = data[offset: offset + size]
        num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
        end = len(block) - 4 * (num_restarts + 1)
        records, key, position = [], b"", 0
        while position < end:
            shared, position = _varint(block, position)
            unshared, position = _varint(block, position)
            value_size, position = _varint(block, position)
            key = key[:shared] + block[position: position + unshared]
            position += unshared
            records.append((key, block[position: position + value_size]))
            position += value_size
        return records

    def names(self) -> list[str]:
        """Every variable name in the checkpoint, sorted."""
        return sorted(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._lookup(name).shape

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def _lookup(self, name: str) -> _Entry:
        if name not in self._entries:
            raise KeyError(f"{self.prefix}: no variable {name!r} in the checkpoint")
        return self._entries[name]

    def read(self, name: str) -> np.ndarray:
        """The variable's value as a NumPy array of its TensorFlow shape."""
        entry = self._lookup(name)
        if entry.sliced or entry.dtype not in _DTYPES:
            raise ValueError(f"{self.prefix}: variable {name!r} is partitioned or of dtype {entry.dtype}; "
                             f"only whole numeric tensors can be read")
        shard = Path(f"{self.prefix}.data-{entry.shard:05d}-of-{self.num_shards:05d}")
        if not shard.is_file():
            raise FileNotFoundError(f"{shard}: the data shard of {self.prefix}.index is missing")
        with open(shard, "rb") as file:
            file.seek(entry.offset)
            raw = file.read(entry.size)
        if len(raw) != entry.size:
            raise ValueError(f"{shard}: truncated; variable {name!r} needs {entry.size} bytes at {entry.offset}")
        return np.frombuffer(raw, dtype=np.dtype(_DTYPES[entry.dtype]).newbyteorder("<")).reshape(entry.shape).copy()
