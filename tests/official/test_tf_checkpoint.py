"""Reading TensorFlow checkpoints without TensorFlow: the tensor-bundle reader and its CRC-32C.

`tf_checkpoint/` was written by TensorFlow 2.21 (`tf.compat.v1.train.Saver`), and `expected.npz` holds every
tensor as TensorFlow's own `CheckpointReader` returns it; both were made with
`python tests/official_tf_reference.py SPECS OUT` and a spec `{"kind": "reader", "folder": ..., "seed": 4, "step": 7}`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hf_simclr.official.crc32c import crc32c, masked_crc32c
from hf_simclr.official.tf_checkpoint import CheckpointError, TFCheckpoint, resolve_checkpoint_prefix

FIXTURE = Path(__file__).parent / "tf_checkpoint"


@pytest.fixture
def checkpoint_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder)
    return folder


def test_crc32c_matches_the_standard_for_bytes_and_arrays():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: an incrementing sequence
    array = np.random.default_rng(0).normal(size=(33, 4097)).astype(np.float32)  # writable, not bytes
    assert crc32c(array) == crc32c(array.tobytes()) == crc32c(bytearray(array.tobytes()))
    assert crc32c(array[:, ::2]) == crc32c(np.ascontiguousarray(array[:, ::2]).tobytes())
    assert masked_crc32c(b"") == 0xA282EAD8  # LevelDB's mask of CRC 0


def test_reads_every_tensor_as_tensorflow_does():
    expected = np.load(FIXTURE / "expected.npz")
    checkpoint = TFCheckpoint(FIXTURE)
    assert sorted(checkpoint.entries) == sorted(name.replace("|", "/") for name in expected.files)
    for stored_name in expected.files:
        name = stored_name.replace("|", "/")
        value = checkpoint.read(name)
        assert value.dtype == expected[stored_name].dtype, name
        assert value.shape == checkpoint.entries[name].shape
        np.testing.assert_array_equal(value, expected[stored_name], err_msg=name)
    assert {str(checkpoint.read(n).dtype) for n in checkpoint.entries} >= {
        "float16",
        "float32",
        "float64",
        "int32",
        "int64",
    }


def test_prefix_from_folder_file_or_prefix(checkpoint_copy: Path):
    prefix = checkpoint_copy / "model.ckpt-7"
    # the state file records a gs:// path from training: only its file name counts
    assert resolve_checkpoint_prefix(checkpoint_copy) == prefix
    for given in (prefix, Path(f"{prefix}.index"), Path(f"{prefix}.data-00000-of-00001")):
        assert resolve_checkpoint_prefix(given) == prefix
    (checkpoint_copy / "checkpoint").unlink()
    assert resolve_checkpoint_prefix(checkpoint_copy) == prefix  # the only .index in the folder


def test_two_checkpoints_in_a_folder_need_a_prefix(checkpoint_copy: Path):
    (checkpoint_copy / "checkpoint").unlink()
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(checkpoint_copy / f"model.ckpt-7{suffix}", checkpoint_copy / f"model.ckpt-8{suffix}")
    with pytest.raises(CheckpointError, match="several checkpoints .*model.ckpt-7, model.ckpt-8"):
        TFCheckpoint(checkpoint_copy)


def test_truncated_data_fails_before_anything_is_read(checkpoint_copy: Path):
    data = checkpoint_copy / "model.ckpt-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated .*download the checkpoint again"):
        TFCheckpoint(checkpoint_copy)


def test_a_changed_byte_fails_the_tensor_checksum(checkpoint_copy: Path):
    data = checkpoint_copy / "model.ckpt-7.data-00000-of-00001"
    checkpoint = TFCheckpoint(checkpoint_copy)
    entry = checkpoint.entries["base_model/conv2d/kernel"]
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 5] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="base_model/conv2d/kernel fails its checksum"):
        TFCheckpoint(checkpoint_copy).read("base_model/conv2d/kernel")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-20], "not a TensorFlow checkpoint index"),
        (lambda raw: raw[:40] + bytes([raw[40] ^ 0x10]) + raw[41:], "block checksum"),
        (lambda raw: b"", "not a TensorFlow checkpoint index"),
    ],
)
def test_a_damaged_index_fails_clearly(checkpoint_copy: Path, damage, message):
    index = checkpoint_copy / "model.ckpt-7.index"
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        TFCheckpoint(checkpoint_copy)


def test_missing_files_fail_clearly(checkpoint_copy: Path, tmp_path: Path):
    (checkpoint_copy / "model.ckpt-7.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match="data-00000-of-00001 is missing"):
        TFCheckpoint(checkpoint_copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no TensorFlow checkpoint"):
        TFCheckpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="model.ckpt-9.index does not exist"):
        TFCheckpoint(checkpoint_copy / "model.ckpt-9")
