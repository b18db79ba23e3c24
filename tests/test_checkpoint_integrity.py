"""Checkpoint checksums: bytes flipped on disk are caught on restore, never restored silently."""

import logging
import os
import shutil
import zlib

import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.training.checkpoint import (
    CORRUPT_SUBDIR,
    Checkpointer,
    CheckpointRestoreError,
    ChecksumMismatchError,
    checksums,
)


def _state(seed):
    """Full-entropy bits: zstd stores them uncompressed, so a flip still decodes (silently)."""
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.integers(0, 2**32, (256, 256), dtype=np.uint32),  # 256 KiB
        "bias": rng.standard_normal(7).astype(np.float32),
        "step": np.int32(seed),
    }


def _target():
    return {
        "kernel": np.zeros((256, 256), np.uint32),
        "bias": np.zeros(7, np.float32),
        "step": np.zeros((), np.int32),
    }


def xor_4kib(step_dir):
    """XORs 4 KiB in the middle of the largest file under ``step_dir`` (its size is unchanged)."""
    files = [os.path.join(root, name) for root, _, names in os.walk(step_dir) for name in names]
    path = max(files, key=os.path.getsize)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        block = np.frombuffer(f.read(4096), np.uint8)
        f.seek(size // 2)
        f.write((block ^ 0xA5).tobytes())
    assert os.path.getsize(path) == size and len(block) == 4096


def _save(directory, steps):
    with Checkpointer(directory, keep_latest=None) as ckpt:
        for step in steps:
            ckpt.save(step, _state(step), data_state={"next_index": step})


def _assert_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        a, e = np.asarray(actual[key]), np.asarray(value)
        assert a.dtype == e.dtype and a.tobytes() == e.tobytes(), key


def test_checksums_are_crc32_of_the_bytes():
    # 0xCBF43926 is the published CRC-32 check value of b"123456789".
    digits = np.frombuffer(b"123456789", np.uint8)
    half = jnp.asarray([[1.0, -2.0]], jnp.bfloat16)
    sums = checksums({"digits": digits, "w": {"half": half}, "lr": 0.1})
    assert sums["['digits']"] == "uint8[9] crc32=cbf43926"
    bits = np.array([0x3F80, 0xC000], np.uint16).tobytes()  # bfloat16 1.0 and -2.0, by hand
    assert sums["['w']['half']"] == f"bfloat16[1, 2] crc32={zlib.crc32(bits):08x}"
    assert "['lr']" not in sums  # Python scalars are stored as JSON


def test_a_flipped_newest_step_is_moved_aside_and_the_previous_one_used(tmp_path, caplog):
    _save(tmp_path, (1, 2, 3))
    xor_4kib(tmp_path / "3")
    with caplog.at_level(logging.WARNING), Checkpointer(tmp_path, keep_latest=3) as ckpt:
        restored = ckpt.restore(_target())
        assert restored.step == 2 and restored.data_state == {"next_index": 2}
        ckpt.save(3, restored.state)  # the step number is free again
    _assert_equal(restored.state, _state(2))
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "step 3" in warnings and "ChecksumMismatchError" in warnings
    assert "state['kernel'] reads as uint32[256, 256] crc32=" in warnings
    assert os.path.isdir(tmp_path / CORRUPT_SUBDIR / "3" / "state")


def test_readers_fall_back_without_moving_and_fail_when_nothing_verifies(tmp_path, caplog):
    _save(tmp_path, (1, 2))
    xor_4kib(tmp_path / "2")
    with caplog.at_level(logging.WARNING), Checkpointer(tmp_path, read_only=True) as reader:
        restored = reader.restore(_target())
    assert restored.step == 1 and "step 2" in caplog.text
    _assert_equal(restored.state, _state(1))

    xor_4kib(tmp_path / "1")
    with Checkpointer(tmp_path, read_only=True) as reader:
        with pytest.raises(CheckpointRestoreError, match="step 2 failed with Checksum") as info:
            reader.restore(_target())
        with pytest.raises(CheckpointRestoreError) as explicit:
            reader.restore(_target(), step=1)
    assert isinstance(info.value.__cause__, ChecksumMismatchError)
    assert isinstance(explicit.value.__cause__, ChecksumMismatchError)
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # nothing moved


def test_a_step_written_without_checksums_restores_with_a_warning(tmp_path, caplog):
    _save(tmp_path, (1,))
    shutil.rmtree(tmp_path / "1" / "checksums")
    with caplog.at_level(logging.WARNING), Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(_target())
    _assert_equal(restored.state, _state(1))
    assert "step 1 has no checksums; restored unverified" in caplog.text


def test_a_different_target_dtype_is_named(tmp_path):
    _save(tmp_path, (1,))
    target = dict(_target(), bias=np.zeros(7, np.float16))
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointRestoreError) as info:
        ckpt.restore(target, step=1)
    assert "state['bias'] reads as float16[7]" in str(info.value)
    assert "saved as float32[7]" in str(info.value)
