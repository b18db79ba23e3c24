import logging

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from sspcab_jax.data import dtd


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
