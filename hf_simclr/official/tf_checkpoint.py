"""Reading TensorFlow name-based checkpoints (`model.ckpt-N.index` + `.data-*` shards) without TensorFlow.

A checkpoint is a tensor bundle: the `.index` file is a LevelDB-style sorted table mapping each variable name to a
`BundleEntryProto` (dtype, shape, shard, offset, size, CRC-32C); the tensor bytes lie in the `.data-SSSSS-of-NNNNN`
shards, little-endian and uncompressed. Everything is checked while reading: the table's magic number and block
checksums, that every tensor lies inside its shard (a truncated download fails before anything is converted) and,
for each tensor read, its CRC-32C.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .crc32c import masked_crc32c

__all__ = ["CheckpointError", "TFCheckpoint", "TensorEntry", "resolve_checkpoint_prefix"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic number
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC-32C
# tensorflow/core/framework/types.proto -> numpy dtypes (the numeric ones a model checkpoint holds)
_DTYPES = {
    1: "<f4",
    2: "<f8",
    3: "<i4",
    4: "u1",
    5: "<i2",
    6: "i1",
    9: "<i8",
    10: "?",
    17: "<u2",
    19: "<f2",
    22: "<u4",
    23: "<u8",
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the bundle and what it is."""

    name: str
    dtype: int  # TensorFlow DataType enum value
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool  # a partitioned variable, stored as slices under other keys

    @property
    def numpy_dtype(self) -> str | None:
        return _DTYPES.get(self.dtype)


def resolve_checkpoint_prefix(path: str | Path) -> Path:
    """The `model.ckpt-N` prefix for a prefix, any of its files, or the folder holding them.

    In a folder, the `checkpoint` state file names the checkpoint (its recorded path may be a `gs://` one from
    training, so only the file name is used); otherwise the folder must hold exactly one `.index` file.
    """
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            found = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(errors="replace"), re.M)
            if found and (path / (found.group(1).replace("\\", "/").rsplit("/", 1)[-1] + ".index")).is_file():
                return path / (found.group(1).replace("\\", "/").rsplit("/", 1)[-1])
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        if not indexes:
            raise CheckpointError(
                f"{path} holds no TensorFlow checkpoint (no *.index file): pass a model.ckpt-N prefix"
            )
        names = ", ".join(p.stem for p in indexes)
        raise CheckpointError(f"{path} holds several checkpoints ({names}): pass one prefix, e.g. {indexes[-1].stem}")
    for suffix in (".index", ".meta"):
        if path.name.endswith(suffix):
            path = path.with_name(path.name[: -len(suffix)])
    path = path.with_name(re.sub(r"\.data-\d{5}-of-\d{5}$", "", path.name))
    if not Path(f"{path}.index").is_file():
        raise CheckpointError(
            f"{path} is not a TensorFlow checkpoint: {path}.index does not exist (pass the model.ckpt-N prefix "
            "or the folder holding it)"
        )
    return path


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer) or shift > 63:
            raise IndexError("varint runs past the end of its buffer")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buffer: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a serialised protobuf message; varints as ints, others as bytes."""
    pos = 0
    while pos < len(buffer):
        key, pos = _varint(buffer, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(buffer, pos)
        elif wire_type == 1:
            value, pos = buffer[pos : pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = _varint(buffer, pos)
            value, pos = buffer[pos : pos + length], pos + length
        elif wire_type == 5:
            value, pos = buffer[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > len(buffer):
            raise IndexError("protobuf field runs past the end of its message")
        yield number, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    fields: dict[str, int | None] = {"dtype": 0, "shard": 0, "offset": 0, "size": 0, "crc32c": None}
    shape: list[int] = []
    sliced = False
    for number, field in _proto_fields(value):
        if number == 1:
            fields["dtype"] = field
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1)
            for dim_number, dim in _proto_fields(field):
                if dim_number == 2:
                    shape.append(next((_signed64(v) for n, v in _proto_fields(dim) if n == 1), 0))
        elif number in (3, 4, 5):
            fields[{3: "shard", 4: "offset", 5: "size"}[number]] = field
        elif number == 6:
            fields["crc32c"] = int.from_bytes(field, "little")
        elif number == 7:
            sliced = True
    return TensorEntry(name=name, shape=tuple(shape), sliced=sliced, **fields)


class TFCheckpoint:
    """A TensorFlow checkpoint opened for reading: `entries` lists every tensor, `read(name)` returns one.

    Raises:
        CheckpointError: the files are missing, truncated or corrupt, or not a tensor bundle.
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix = resolve_checkpoint_prefix(path)
        self.index_path = Path(f"{self.prefix}.index")
        raw = self.index_path.read_bytes()
        try:
            entries, num_shards = self._parse_index(raw)
        except CheckpointError:
            raise
        except (IndexError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.index_path} is corrupt ({err}): download the checkpoint again") from None
        self.entries: dict[str, TensorEntry] = entries
        self.num_shards = num_shards
        self._check_shards()

    def _parse_index(self, raw: bytes) -> tuple[dict[str, TensorEntry], int]:
        if len(raw) < _FOOTER_SIZE or int.from_bytes(raw[-8:], "little") != _TABLE_MAGIC:
            raise CheckpointError(
                f"{self.index_path} is not a TensorFlow checkpoint index (no table footer: the file is truncated "
                "or of another format); download the checkpoint again"
            )
        footer = raw[-_FOOTER_SIZE:]
        _, pos = _varint(footer, 0)  # metaindex handle: unused by tensor bundles
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        entries: dict[str, TensorEntry] = {}
        header: bytes | None = None
        for _, handle in self._block_entries(raw, index_offset, index_size):
            offset, pos = _varint(handle, 0)
            size, _ = _varint(handle, pos)
            for key, value in self._block_entries(raw, offset, size):
                if key == b"":
                    header = value
                    continue
                name = key.decode("utf-8")
                entries[name] = _parse_entry(name, value)
        if header is None:
            raise CheckpointError(f"{self.index_path} has no bundle header: it is not a TensorFlow V2 checkpoint")
        header_fields = dict(_proto_fields(header))
        if header_fields.get(2, 0) != 0:
            raise CheckpointError(f"{self.index_path} is a big-endian checkpoint; convert it on a little-endian host")
        return entries, int(header_fields.get(1, 1))

    def _block_entries(self, raw: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
        end = offset + size
        if end + _BLOCK_TRAILER_SIZE > len(raw) - _FOOTER_SIZE:
            raise CheckpointError(f"{self.index_path} is truncated: download the checkpoint again")
        block, compression = raw[offset:end], raw[end]
        stored_crc = int.from_bytes(raw[end + 1 : end + 5], "little")
        if masked_crc32c(raw[offset : end + 1]) != stored_crc:
            raise CheckpointError(f"{self.index_path} is corrupt (a block checksum differs): download it again")
        if compression != 0:
            raise CheckpointError(
                f"{self.index_path} uses a compressed table (type {compression}), which TensorFlow never writes "
                "for checkpoints: it is not a TensorFlow checkpoint index"
            )
        num_restarts = int.from_bytes(block[-4:], "little")
        limit = len(block) - 4 - 4 * num_restarts
        pos, key = 0, b""
        while pos < limit:
            shared, pos = _varint(block, pos)
            unshared, pos = _varint(block, pos)
            value_size, pos = _varint(block, pos)
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            yield key, block[pos : pos + value_size]
            pos += value_size

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _check_shards(self) -> None:
        sizes = {}
        for shard in range(self.num_shards):
            path = self.shard_path(shard)
            if not path.is_file():
                raise CheckpointError(
                    f"{path} is missing: copy every .data-* file of the checkpoint next to its .index"
                )
            sizes[shard] = path.stat().st_size
        for entry in self.entries.values():
            if entry.sliced:
                continue
            if entry.shard not in sizes:
                raise CheckpointError(
                    f"{self.index_path} names shard {entry.shard} of {self.num_shards}: it is corrupt"
                )
            if entry.offset + entry.size > sizes[entry.shard]:
                raise CheckpointError(
                    f"{self.shard_path(entry.shard)} is truncated ({sizes[entry.shard]} bytes; {entry.name} ends at "
                    f"byte {entry.offset + entry.size}): download the checkpoint again"
                )

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str) -> np.ndarray:
        """The tensor `name` as a numpy array, after checking its CRC-32C."""
        entry = self.entries[name]
        if entry.sliced:
            raise CheckpointError(
                f"{name} is a partitioned variable in {self.prefix}: such checkpoints are not supported"
            )
        dtype = entry.numpy_dtype
        if dtype is None:
            raise CheckpointError(f"{name} in {self.prefix} has TensorFlow dtype {entry.dtype}, which is not numeric")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * np.dtype(dtype).itemsize != entry.size:
            raise CheckpointError(
                f"{self.index_path} is corrupt: {name} has {entry.size} bytes for shape {entry.shape}"
            )
        array = np.empty(entry.shape, dtype=dtype)  # read straight into the result: one copy of the tensor
        with self.shard_path(entry.shard).open("rb") as f:
            f.seek(entry.offset)
            read = f.readinto(array.reshape(-1).view(np.uint8))
        if read != entry.size:
            raise CheckpointError(
                f"{self.shard_path(entry.shard)} is truncated ({name} ends past the end of the file): download the "
                "checkpoint again"
            )
        if entry.crc32c is not None and masked_crc32c(array) != entry.crc32c:
            raise CheckpointError(
                f"{self.shard_path(entry.shard)} is corrupt ({name} fails its checksum): download the checkpoint again"
            )
        return array
