"""CRC-32C (Castagnoli), the checksum TensorFlow stores for every tensor and index block of a checkpoint.

The checksum itself is Google's C library through `google-crc32c` (hardware-accelerated where the CPU has CRC
instructions), so that checking a multi-gigabyte checkpoint costs less than reading it from disk
(`scripts/benchmark_official_conversion.py` measures both).
"""

from __future__ import annotations

import google_crc32c
import numpy as np

__all__ = ["crc32c", "masked_crc32c"]


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The standard CRC-32C of `data` (`crc32c(b"123456789") == 0xE3069283`)."""
    if isinstance(data, np.ndarray):
        array = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        array = np.frombuffer(data, dtype=np.uint8)
    array = array.view()
    array.flags.writeable = False  # google-crc32c reads only read-only buffers, which it hashes without a copy
    return google_crc32c.value(array)


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The CRC-32C as TensorFlow and LevelDB store it: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
