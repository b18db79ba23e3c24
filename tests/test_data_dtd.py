import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from sspcab_jax.data import dtd
from sspcab_jax.data.cv2_resize import resize_linear_cv2
from sspcab_jax.data.images import DatasetNotFoundError


def test_tfds_source_via_mock_data(tmp_path, caplog):
    with caplog.at_level(logging.INFO), tfds.testing.mock_data(num_examples=6):
        out = dtd.load_anomaly_sources(size=(16, 24), max_images=4, data_dir=tmp_path)
    assert out.shape == (4, 16, 24, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert "TFDS dtd" in caplog.text


def test_folder_fallback_then_none(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for rel in ("banded/a.jpg", "banded/b.png", "dotted/deep/c.png"):
        path = tmp_path / "textures" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)
    (tmp_path / "textures" / "broken.png").write_bytes(b"junk")
    with caplog.at_level(logging.INFO):
        out = dtd.load_anomaly_sources(
            size=12, data_dir=tmp_path / "no_tfds", folder=tmp_path / "textures"
        )
    assert out.shape == (3, 12, 12, 3)  # the unreadable file is skipped
    assert "from folder" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert dtd.load_anomaly_sources(size=12, data_dir=tmp_path / "no_tfds") is None
    assert "Perlin" in caplog.text
    assert dtd.load_anomaly_sources(size=8, use_tfds=False, folder=tmp_path / "empty") is None


def test_all_splits_and_all_images_via_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        out = dtd.load_anomaly_sources(
            size=8, max_images=None, data_dir=tmp_path, split="all", dtype="uint8"
        )
        one = dtd.load_anomaly_sources(size=8, max_images=None, data_dir=tmp_path, split="test")
    assert out.shape == (12, 8, 8, 3) and out.dtype == np.uint8  # 3 splits x 4
    assert one.shape == (4, 8, 8, 3)


def test_folder_all_images_cv2_resize(tmp_path):
    rng = np.random.default_rng(1)
    arrays = []
    for i in range(5):
        arrays.append(rng.integers(0, 255, (21, 17, 3), dtype=np.uint8))
        path = tmp_path / "images" / f"cat{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arrays[-1]).save(path)
    out = dtd.load_anomaly_sources(
        size=8,
        max_images=None,
        use_tfds=False,
        folder=tmp_path / "images",
        resize="cv2",
        dtype="uint8",
    )
    assert out.shape == (5, 8, 8, 3)
    expected = sorted(tuple(resize_linear_cv2(a, 8, 8).ravel()) for a in arrays)
    assert sorted(tuple(o.ravel()) for o in out) == expected


def test_require_raises_with_instructions(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dtd-r1.0.1.tar.gz") as info:
        dtd.require_anomaly_sources(size=8, data_dir=tmp_path / "none", folder=tmp_path / "x")
    assert "anomaly_sources=perlin" in str(info.value) and str(tmp_path / "x") in str(info.value)
