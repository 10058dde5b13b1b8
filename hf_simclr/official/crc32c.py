"""CRC-32C (Castagnoli), the checksum TensorFlow stores for every tensor and index block of a checkpoint.

Pure Python and numpy, fast enough for multi-gigabyte checkpoints: the data is cut into equal chunks whose CRCs are
computed side by side (one table lookup per byte, vectorised over the chunks), then folded together with the
"append n zero bytes" operator, which is linear over GF(2).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["crc32c", "masked_crc32c"]

_POLY = 0x82F63B78  # Castagnoli, bit-reflected
_CHUNK = 4096  # bytes per lane of the vectorised pass
_MIN_VECTORISED = 32 * _CHUNK  # below this, a plain byte loop is faster


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table[byte] = crc
    return table


_TABLE = _make_table()
_TABLE_LIST = _TABLE.tolist()


def _raw_bytes(crc: int, data: bytes | memoryview) -> int:
    """The unconditioned CRC register after feeding `data`, one byte at a time (for short inputs)."""
    table = _TABLE_LIST
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


# A linear map on 32-bit CRC registers is stored as its 32 columns (the images of 1 << i).
def _apply(columns: list[int], value: int) -> int:
    out, bit = 0, 0
    while value:
        if value & 1:
            out ^= columns[bit]
        value >>= 1
        bit += 1
    return out


def _compose(outer: list[int], inner: list[int]) -> list[int]:
    return [_apply(outer, column) for column in inner]


_ONE_ZERO_BYTE = [_raw_bytes(1 << i, b"\0") for i in range(32)]


def _zeros_operator(length: int) -> list[int]:
    """The map register -> register after `length` zero bytes (binary powers of the one-byte map)."""
    result = [1 << i for i in range(32)]
    power = _ONE_ZERO_BYTE
    while length:
        if length & 1:
            result = _compose(power, result)
        length >>= 1
        if length:
            power = _compose(power, power)
    return result


@functools.lru_cache(maxsize=64)
def _fold_tables(span: int) -> np.ndarray:
    """Four 256-entry tables applying the `span` zero bytes map to a whole uint32 array with four lookups."""
    columns = _zeros_operator(span)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for part in range(4):
        for byte in range(256):
            tables[part, byte] = _apply(columns, byte << (8 * part))
    return tables


def _register_after_chunks(start: int, data: np.ndarray) -> int:
    """The CRC register after feeding `data` (uint8, a whole number of chunks) to a register holding `start`.

    Each chunk is a lane processed from register 0 (the first from `start`). A register update is affine,
    r -> L(r) ^ T(byte), so two neighbouring spans combine as L^len(right)(left) ^ right.
    """
    lanes = data.reshape(-1, _CHUNK)
    registers = np.zeros(lanes.shape[0], dtype=np.uint32)
    registers[0] = start
    for column in range(_CHUNK):
        registers = _TABLE[(registers ^ lanes[:, column]) & 0xFF] ^ (registers >> 8)
    span = _CHUNK
    while registers.shape[0] > 1:
        if registers.shape[0] % 2:  # a zero register on the left changes nothing: L(0) = 0
            registers = np.concatenate([np.zeros(1, dtype=np.uint32), registers])
        tables, left = _fold_tables(span), registers[0::2]
        shifted = tables[0][left & 0xFF] ^ tables[1][(left >> 8) & 0xFF]
        shifted ^= tables[2][(left >> 16) & 0xFF] ^ tables[3][left >> 24]
        registers = shifted ^ registers[1::2]
        span *= 2
    return int(registers[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The standard CRC-32C of `data` (`crc32c(b"123456789") == 0xE3069283`)."""
    if isinstance(data, np.ndarray):
        array = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        array = np.frombuffer(data, dtype=np.uint8)
    register = 0xFFFFFFFF
    whole = (array.shape[0] // _CHUNK) * _CHUNK
    if whole >= _MIN_VECTORISED:
        register = _register_after_chunks(register, array[:whole])
        array = array[whole:]
    return _raw_bytes(register, array.tobytes()) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The CRC-32C as TensorFlow and LevelDB store it: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
