"""Datasets and anomaly sources chosen by an experiment config."""

import numpy as np
import pytest
from PIL import Image

from configs import test as test_config
from sspcab_jax.data import DatasetNotFoundError
from sspcab_jax.data.bundled_textures import BUNDLED_PICTURES, bundled_texture_pool
from sspcab_jax.training.data_setup import build_anomaly_sources, build_sources


def test_bundled_pool_is_deterministic_and_in_range():
    pool = bundled_texture_pool(16, crops_per_picture=2, seed=3)
    assert pool.shape == (2 * len(BUNDLED_PICTURES), 16, 16, 3)
    assert pool.dtype == np.float32 and 0.0 <= pool.min() and pool.max() <= 1.0
    np.testing.assert_array_equal(pool, bundled_texture_pool(16, crops_per_picture=2, seed=3))
    assert not np.array_equal(pool, bundled_texture_pool(16, crops_per_picture=2, seed=4))


def test_anomaly_source_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # 'auto' below must not find the user's TFDS dtd
    config = test_config.get_config()
    config.data.anomaly_sources = "perlin"
    assert build_anomaly_sources(config) is None
    config.data.anomaly_sources = "bundled"
    assert build_anomaly_sources(config).shape[1:] == (32, 32, 3)
    folder = tmp_path / "textures" / "banded"
    folder.mkdir(parents=True)
    for i in range(3):
        pixels = np.full((40, 50, 3), 60 * i, np.uint8)
        Image.fromarray(pixels).save(folder / f"t{i}.jpg")
    config.data.anomaly_sources = "auto"
    config.data.anomaly_source_dir = str(tmp_path / "textures")
    pool = build_anomaly_sources(config)
    assert pool.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(
        sorted(pool.reshape(3, -1).mean(1)), [0, 60 / 255, 120 / 255], atol=0.02
    )
    config.data.anomaly_sources = "dtd"  # the paper recipe: the same folder, every image
    config.data.max_anomaly_sources = 0
    assert build_anomaly_sources(config).shape == (3, 32, 32, 3)
    config.data.anomaly_sources = "bogus"
    with pytest.raises(ValueError, match="anomaly_sources='bogus'"):
        build_anomaly_sources(config)


def test_paper_recipe_stops_without_dtd_instead_of_falling_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no prepared TFDS dtd in this home
    config = test_config.get_config()
    config.data.anomaly_source_dir = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    config.data.anomaly_sources = "auto"
    assert build_anomaly_sources(config) is None  # demo recipes: Perlin textures
    config.data.anomaly_sources = "dtd"
    with pytest.raises(DatasetNotFoundError, match="DTD not found"):
        build_anomaly_sources(config)


def test_embedded_dataset_is_written_once_and_read(tmp_path):
    config = test_config.get_config()
    train, test = build_sources(config, tmp_path)
    assert len(train) > 0 and len(test) > 0
    labels = {int(test[i]["label"]) for i in range(len(test))}
    assert labels == {0, 1}
    stamp = (tmp_path / "data").stat().st_mtime_ns
    build_sources(config, tmp_path)
    assert (tmp_path / "data").stat().st_mtime_ns == stamp
